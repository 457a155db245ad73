"""The suite-wide log check (tests/logcheck.py) can fail: a run whose server process logs a
JWT the run minted, or whose own logger writes a recorded service key, ends failed and
names the lines without printing the secrets; the same run with `darkroom serve`'s
redaction installed in the server passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.logcheck import Registry

ROOT = Path(__file__).resolve().parents[2]

INNER = '''
import logging, subprocess, sys
import jwt
from tests import logcheck

SERVER = """
import logging, sys
REDACT
logging.basicConfig(level=logging.INFO)
logging.getLogger("throwaway.access").info('"GET /ws?token=%s HTTP/1.1" 101', sys.argv[1])
"""
SERVICE_KEY = "svc-key-for-the-log-check-" + "x" * 12


def test_a_server_process_logs_a_minted_jwt():
    token = jwt.encode({"sub": "someone", "exp": 4102444800}, "k" * 32, algorithm="HS256")
    subprocess.run([sys.executable, "-c", SERVER, token], check=True)


def test_this_process_logs_a_recorded_key():
    logcheck.record(SERVICE_KEY, "service key")
    logging.getLogger("throwaway").warning("calling with key %s", SERVICE_KEY if LEAK else "-")
'''


def run_inner(tmp_path: Path, *, redacted: bool) -> subprocess.CompletedProcess[str]:
    body = INNER.replace(
        "REDACT", "from darkroom import redact; redact.install()" if redacted else ""
    )
    (tmp_path / "test_inner.py").write_text(f"LEAK = {not redacted}\n{body}")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.logcheck",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_run_whose_logs_hold_a_recorded_secret_fails_and_names_the_lines(tmp_path: Path) -> None:
    run = run_inner(tmp_path, redacted=False)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "2 passed" in output, output  # the tests pass: the log check fails the run
    leaks = [line for line in output.splitlines() if line.startswith("SECRET IN LOG")]
    assert any("(jwt)" in line and "GET /ws?token=[recorded secret]" in line for line in leaks), (
        output
    )
    assert any(
        "(service key)" in line and "calling with key [recorded secret]" in line for line in leaks
    ), output
    assert "eyJ" not in output and "svc-key-for-the-log-check" not in output


def test_the_same_run_passes_when_the_server_redacts_and_nothing_logs_the_key(
    tmp_path: Path,
) -> None:
    run = run_inner(tmp_path, redacted=True)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "no secret in any log line" in output, output


def test_the_registry_finds_a_token_inside_a_longer_line_and_nothing_in_other_text() -> None:
    registry = Registry()
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"
    registry.add(jwt_like, "jwt")
    registry.add("drk_" + "a" * 43, "pat")
    registry.add("service-key-value", "service key")
    registry.add("short", "ignored")  # too short to search for
    text = (
        f"a=1 token={jwt_like}&x=2\n then drk_{'a' * 43}xyz\n"
        "and service-key-value\nshort eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ5In0.c2ln"
    )
    assert sorted(kind for _, kind in registry.find(text)) == ["jwt", "pat", "service key"]
    assert list(registry.find("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0 short")) == []
