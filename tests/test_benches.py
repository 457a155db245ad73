"""The HTTP benches still run and still state their figures (issue 17): `bench/api.py`
prints Darkroom's rate beside the bare stack's measured in the same run, their ratio and
each side's CPU per command; `bench/edge.py` the edge's CPU per request. Short runs on
the tests' PostgreSQL: a bench nobody runs rots silently."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from darkroom.database import Database

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"[0-9]+(?:\.[0-9]+)?"


def run(database: Database, *args: str) -> str:
    url = (
        f"postgresql://{database.user}:{database.password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_api_bench_states_darkroom_against_the_bare_stack_in_one_run(
    database: Database,
) -> None:
    printed = run(database, "bench/api.py", "--seconds", "1", "--clients", "2", "--no-inprocess")

    row = re.search(
        rf"^\s+2 \|\s+({NUMBER})\s.*\|\s+({NUMBER})\s+{NUMBER} \|\s+({NUMBER}) \|", printed, re.M
    )
    assert row, printed
    darkroom, bare, ratio = (float(x) for x in row.groups())
    assert darkroom > 0 and bare > 0
    assert abs(ratio - darkroom / bare) < 0.01
    assert re.search(r"\| 0/0/-$", printed, re.M), printed  # no errors on either stack
    for stack in ("command at 2 clients \\(Darkroom\\)", "request at 2 clients \\(bare\\)"):
        assert re.search(rf"CPU ms per {stack}: server {NUMBER}, .* all {NUMBER}", printed)


def test_the_edge_bench_states_its_cpu_per_request(database: Database) -> None:
    printed = run(database, "bench/edge.py", "--requests", "200", "--repeat", "1")

    found = re.search(rf"edge CPU per request: ({NUMBER}) us", printed)
    assert found and float(found.group(1)) > 0, printed
