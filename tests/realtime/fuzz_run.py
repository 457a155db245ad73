"""Running the schemathesis CLI against a served `/openapi.json`: every check, the
stateful phase, and this repository's hooks and settings; the summary as numbers.

Used by the CI form (tests/realtime/test_api_fuzz_all_checks.py) and the long run
(bench/api_fuzz.py), so both send the same kind of requests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG = HERE / "schemathesis.toml"
HOOKS = "tests.realtime.fuzz_hooks"


@dataclass
class FuzzResult:
    exit_code: int
    requests: int  # HTTP requests sent (every step of every scenario)
    findings: int  # unique failures schemathesis reports
    links_covered: int
    links_total: int
    seconds: float
    output: str


GENERATED = "examples,coverage,fuzzing"  # one operation at a time
STATEFUL = "stateful"  # sequences that follow the document's links


def with_identities(report_dir: Path, tokens: dict[str, str]) -> Path:
    """The settings plus a Web Fuzzing Commons auth file naming each bearer token as a
    peer: `object_level_authorization` then reads what one user made as every other."""
    report_dir.mkdir(parents=True, exist_ok=True)
    users = report_dir / "users.json"
    users.write_text(
        json.dumps(
            {
                "auth": [
                    {
                        "name": name,
                        "fixedHeaders": [{"name": "Authorization", "value": f"Bearer {token}"}],
                    }
                    for name, token in tokens.items()
                ]
            }
        )
    )
    config = report_dir / "schemathesis.toml"
    config.write_text(
        CONFIG.read_text() + f"\n[auth.wfc]\npath = {json.dumps(str(users))}\n"
        f"peers = {json.dumps(list(tokens))}\n"
    )
    return config


def run_schemathesis(
    base_url: str,
    headers: dict[str, str],
    *,
    phases: str,
    examples: int,
    max_time: float | None = None,
    workers: int = 2,
    report_dir: Path,
    seed: int | None = None,
    identities: dict[str, str] | None = None,
) -> FuzzResult:
    """`st run --checks all` over `phases`; the requests are counted from its NDJSON
    report. Run the stateful phase on its own budget: after the others it would get
    what time is left, which is often none. `identities` (name -> bearer token) replace
    `headers`' credentials with peers for `object_level_authorization`."""
    config = with_identities(report_dir, identities) if identities else CONFIG
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        phases,
        # replaced by fuzz_hooks.created_resources_stay_available (docs/API.md)
        "--exclude-checks",
        "ensure_resource_availability",
        # a readiness probe answers 503 when the database is slow: its job, which
        # not_a_server_error counts as a failure whatever the document declares
        "--exclude-path",
        "/health/ready",
        "-n",
        str(examples),
        "--workers",
        str(workers),
        "--continue-on-failure",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
        "--suppress-health-check",
        "all",
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if max_time:
        command += ["--max-time", str(int(max_time))]
    if seed is not None:
        command += ["--seed", str(seed)]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": HOOKS,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    return FuzzResult(
        done.returncode,
        _requests(report_dir),
        _findings(output),
        *_links(output),
        _seconds(output),
        output,
    )


def _requests(report_dir: Path) -> int:
    """Interactions recorded in the NDJSON report (one per request sent)."""
    total = 0
    for path in report_dir.glob("*.ndjson"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if finished:
                total += len((finished.get("recorder") or {}).get("interactions") or {})
    return total


def _findings(output: str) -> int:
    found = re.search(r"(\d+) found (\d+) unique failures", output)
    if found:
        return int(found.group(2))
    return 0 if re.search(r"No issues found|\bpassed\b", output) else -1


def _links(output: str) -> tuple[int, int]:
    found = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", output)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _seconds(output: str) -> float:
    found = re.findall(r" in ([\d.]+)s =+", output)
    return float(found[-1]) if found else 0.0
