"""Retries on a hot aggregate take turns inside one process."""

from __future__ import annotations

import threading
import time
from uuid import uuid4

from domain.services.hot import HotAggregates


def test_two_holders_of_one_aggregate_take_turns() -> None:
    hot, ident = HotAggregates(), uuid4()
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(n: int) -> None:
        with hot.hold([ident, uuid4()]):
            inside.append(n)
            if len(inside) > 1:
                overlaps.append(n)
            time.sleep(0.02)
            inside.remove(n)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert overlaps == []


def test_holders_of_overlapping_sets_in_any_order_do_not_deadlock() -> None:
    hot, a, b = HotAggregates(), uuid4(), uuid4()
    finished: list[int] = []

    def hold(ids: list, n: int) -> None:  # type: ignore[type-arg]
        for _ in range(50):
            with hot.hold(ids):
                pass
        finished.append(n)

    threads = [
        threading.Thread(target=hold, args=([a, b], 1)),
        threading.Thread(target=hold, args=([b, a], 2)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(finished) == [1, 2]


def test_a_lock_is_forgotten_once_no_one_holds_it() -> None:
    hot, ident = HotAggregates(), uuid4()
    with hot.hold([ident]), hot.hold([ident]):  # the same thread may nest
        assert ident in hot._locks
    assert hot._locks == {}


def test_holding_nothing_takes_no_lock() -> None:
    hot = HotAggregates()
    with hot.hold([]):
        assert hot._locks == {}
