"""Exactly once: a runner SIGKILLed at random points while events stream in, restarted,
ends with every view (and the change log) identical to a from-scratch fold."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from projections.reading import wait_for_position
from tests.projections.conftest import scratch_fold, snapshot_tables, studio_env
from tests.projections.workload import Workload, run_in_thread, steps

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]


def start_runner(database, schema) -> subprocess.Popen[bytes]:
    spec = {
        "env": studio_env(database, schema),
        "conninfo": database.conninfo,
        "schema": schema,
        "batch_size": 40,
        "batch_latency": 0.02,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.projections.runner_process", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_views_equal_a_fresh_fold_after_random_sigkills(app, database, schema, conn):
    rng = random.Random(11)
    workload = Workload(app, seed=5)
    steps(workload, 150)
    stop, errors = threading.Event(), []
    writer = run_in_thread(workload, stop, errors)
    try:
        for _ in range(5):
            process = start_runner(database, schema)
            time.sleep(rng.uniform(1.2, 2.5))  # start-up (~1 s), then some batches
            process.send_signal(signal.SIGKILL)
            process.wait()
    finally:
        stop.set()
        writer.join(30)
    assert not errors, errors
    head = app.head_position()
    process = start_runner(database, schema)
    try:
        wait_for_position(conn, head, timeout=120)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    assert head > 400
    assert snapshot_tables(database, schema) == scratch_fold(app, database, head)
