"""Re-deciding on a hot aggregate, one thread of this process at a time.

Many callers of one aggregate (an owner's workload under a burst of task commands,
a generation starred from several tabs) load the same version, and only one save
of that version can win: the others conflict, re-decide and collide again. A
command that lost such a race re-decides while holding this process's lock on the
aggregates it wrote, so its retries queue behind each other here instead of
colliding in the database. First attempts take no lock (the common, uncontended
case pays nothing), and other processes are still kept honest by the version check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from uuid import UUID


class HotAggregates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[UUID, list[object]] = {}  # id -> [RLock, users]

    @contextmanager
    def hold(self, ids: Iterable[UUID]) -> Iterator[None]:
        """Hold the locks of `ids` (in sorted order: no two holders deadlock)."""
        wanted = sorted(set(ids))
        if not wanted:
            yield
            return
        with ExitStack() as stack:
            for ident in wanted:
                lock = self._use(ident)
                stack.callback(self._disuse, ident)
                lock.acquire()
                stack.callback(lock.release)
            yield

    def _use(self, ident: UUID) -> threading.RLock:
        with self._lock:
            entry = self._locks.setdefault(ident, [threading.RLock(), 0])
            entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
            return entry[0]  # type: ignore[return-value]

    def _disuse(self, ident: UUID) -> None:
        with self._lock:
            entry = self._locks[ident]
            entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
            if entry[1] == 0:
                del self._locks[ident]
