"""The progress relay survives its own death: it comes back (`max_restarts=-1`), a drain
sent while it is down waits for it instead of failing, and a failure logged in a loop is
printed once per window with a count of the ones held back (the 30-minute chaos soak
logged ~8,750 "progress relay failed" lines when the relay died with a Ray node)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import pytest

from inference.actors import ActorPool, PoolConfig
from inference.quiet import RepeatedFailures, quiet_repeated_failures

pytestmark = pytest.mark.timeout(180)


def failure(message: str) -> logging.LogRecord:
    try:
        raise RuntimeError("relay gone")
    except RuntimeError:
        info = sys.exc_info()
    return logging.LogRecord("darkroom.inference", logging.ERROR, __file__, 1, message, (), info)


def test_a_failure_logged_in_a_loop_is_printed_once_per_window_with_a_count() -> None:
    quiet = RepeatedFailures(window=0.5)
    shown = [quiet.filter(failure("progress relay failed")) for _ in range(100)]
    assert shown.count(True) == 1 and shown[0] is True

    time.sleep(0.6)
    again = failure("progress relay failed")
    assert quiet.filter(again)
    assert again.getMessage() == "progress relay failed (and 99 more like it in the last 0.5 s)"


def test_other_failures_and_plain_records_are_never_held_back() -> None:
    quiet = RepeatedFailures(window=60)
    assert quiet.filter(failure("progress relay failed"))
    assert quiet.filter(failure("heartbeat failed"))
    plain = logging.LogRecord("darkroom.inference", logging.INFO, __file__, 1, "ready", (), None)
    assert all(quiet.filter(plain) for _ in range(3))


def test_the_memory_of_failures_is_bounded_forgetting_the_one_shown_longest_ago() -> None:
    quiet = RepeatedFailures(window=60, most=3)
    for n in range(10):
        assert quiet.filter(failure(f"task {n} failed"))
    assert list(quiet.last) == ["task 7 failed", "task 8 failed", "task 9 failed"]
    assert not quiet.filter(failure("task 9 failed"))  # still remembered: held back
    assert quiet.filter(failure("task 0 failed"))  # forgotten: shown again


def test_a_killed_relay_comes_back_and_a_drain_sent_meanwhile_waits_for_it(
    ray_cluster: dict[str, Any],
) -> None:
    import ray

    pool = ActorPool(PoolConfig(specs=[]))  # the relay alone: no model actors
    pool.start()
    try:
        relay = pool.relay
        ray.get(relay.report.remote("t1", 1, 4), timeout=60)
        assert ray.get(relay.drain.remote(0.1), timeout=60) == {"t1": (1, 4)}

        ray.kill(relay, no_restart=False)  # dies as with its node; may come back
        waited = ray.get(relay.drain.remote(0.1), timeout=90)  # no RayActorError
        assert waited == {}  # a new relay: what the dead one held is gone

        relay.report.remote("t2", 3, 4)
        assert ray.get(relay.drain.remote(5.0), timeout=60) == {"t2": (3, 4)}
    finally:
        pool.shutdown()


def test_threads_logging_failures_at_once_never_break_the_bounded_memory() -> None:
    quiet = RepeatedFailures(window=60, most=10)
    errors: list[BaseException] = []

    def log_many(worker: int) -> None:
        try:
            for n in range(2_000):
                quiet.filter(failure(f"worker {worker} task {n} failed"))
        except BaseException as error:  # a filter's error would reach the logging call
            errors.append(error)

    threads = [threading.Thread(target=log_many, args=(w,)) for w in range(4)]
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside the filter, as under load
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switching)
    assert errors == [] and len(quiet.last) == 10


def test_the_quieting_filter_is_installed_once_on_a_logger() -> None:
    logger = logging.getLogger("darkroom.tests.quiet")
    quiet_repeated_failures(logger)
    quiet_repeated_failures(logger)
    assert sum(isinstance(f, RepeatedFailures) for f in logger.filters) == 1
