"""Logging that stays readable when the same failure repeats many times a second.

A dead actor or relay makes every call fail the same way until Ray brings it back;
`RepeatedFailures` prints such a failure once per window and counts the rest.
"""

from __future__ import annotations

import logging
import threading
import time

QUIET_FOR = 10.0  # seconds a logged failure stays quiet before it is printed again
MOST_REMEMBERED = 1_000  # distinct messages remembered; the ones seen longest ago go first


class RepeatedFailures(logging.Filter):
    """Lets a failure (a record with a traceback) through once per `window` seconds per
    message (as formatted); the next one through says how many were held back since.
    Messages carry task ids, so the memory of them is bounded (`most`)."""

    def __init__(self, window: float = QUIET_FOR, most: int = MOST_REMEMBERED) -> None:
        super().__init__()
        self.window = window
        self.most = most
        self.last: dict[str, tuple[float, int]] = {}
        # The dispatcher's loop and its store threads log on the same logger.
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        now = time.monotonic()
        key = record.getMessage()  # the same words: task ids and the like tell failures apart
        with self.lock:
            shown_at, held = self.last.pop(key, (float("-inf"), 0))
            if now - shown_at < self.window:
                self.last[key] = (shown_at, held + 1)
                return False
            self.last[key] = (now, 0)  # re-inserted: the dict's order is the order last shown
            while len(self.last) > self.most:
                del self.last[next(iter(self.last))]
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window:g} s)"
        return True


def quiet_repeated_failures(logger: logging.Logger) -> None:
    """Installs one `RepeatedFailures` on `logger` (again: nothing more)."""
    if not any(isinstance(f, RepeatedFailures) for f in logger.filters):
        logger.addFilter(RepeatedFailures())
