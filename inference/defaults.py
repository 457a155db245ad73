"""The dispatcher's timings and limits and their defaults, apart from the dispatcher.

`inference.dispatcher` runs with them; the settings tree (`darkroom/settings_sections.py`)
takes its defaults from here without importing the dispatcher and Ray.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DispatcherConfig:
    """Timings and limits of the loop (seconds)."""

    run_types: tuple[str, ...] = ("gpu", "api")
    poll_interval: float = 0.1
    # Candidates per claim attempt: the claim command re-reads each one, so the first try
    # offers the two oldest and only a refusal of both (their owners at the limit or out
    # of credits) widens the search.
    candidate_pages: tuple[int, ...] = (2, 16)
    heartbeat_interval: float = 10.0
    cancel_check_interval: float = 0.25
    progress_interval: float = 0.5
    sweep_interval: float | None = 30.0
    settle_threads: int = 4
    # A local media store's writes are done on the loop (no thread hand-off before the
    # completion); False: on the settle threads, as every other store's.
    store_inline: bool = True
    relay_poll: float = 1.0
    max_wait: float = 0.5
    timings_kept: int = 100_000
