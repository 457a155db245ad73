"""Heartbeats move a last-seen time outside the log; the log keeps what sweeps decide."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from darkroom.database import Database
from darkroom.pulse import PostgresPulse
from darkroom.wiring import build_studio
from domain.pulse import MemoryPulse, Report
from domain.studio import Studio
from domain.task import IN_PROGRESS
from domain.worker import QUIET_GAP, Worker
from tests.domain.test_task_services import a_heartbeat_keeps_tasks, funded, name, queue, task


@pytest.fixture(scope="module")
def elsewhere(database: Database, schema: str, studio: Studio) -> Iterator[Studio]:
    """A second process's studio on the same schema (its own pool and pulse object)."""
    app = build_studio(database, schema, pool_size=1)
    yield app
    app.close()


def test_a_wired_studio_keeps_its_pulse_in_postgresql(studio: Studio) -> None:
    assert isinstance(studio.pulse, PostgresPulse)
    assert isinstance(Studio().pulse, MemoryPulse)


def test_a_live_workers_heartbeats_store_no_events(studio: Studio) -> None:
    worker = name("w")
    start = datetime.now(UTC)
    studio.heartbeat(worker, now=start)  # first sight registers it: events
    head = studio.head_position()
    for seconds in range(10, 300, 10):
        studio.heartbeat(worker, now=start + timedelta(seconds=seconds))
    assert studio.head_position() == head
    assert studio.pulse.last_seen(worker) == start + timedelta(seconds=290)


def test_a_heartbeat_to_one_process_keeps_the_worker_alive_for_a_sweep_in_another(
    studio: Studio, elsewhere: Studio
) -> None:
    a_heartbeat_keeps_tasks(studio, sweeper=elsewhere)


def test_the_lost_event_records_the_last_sign_of_life_the_sweep_decided_on(studio: Studio) -> None:
    owner, project_id = funded(studio)
    worker = name("w")
    task_id = queue(studio, project_id, owner)
    start = datetime.now(UTC)
    studio.claim_task(task_id, worker, now=start)
    studio.heartbeat(worker, [task_id], now=start + timedelta(seconds=30))
    studio.sweep_lost_workers(start + timedelta(seconds=200))
    lost: Any = [e for e in studio.events.get(Worker.id_for(worker)) if isinstance(e, Worker.Lost)]
    assert [(e.at, e.last_seen) for e in lost] == [
        (start + timedelta(seconds=200), start + timedelta(seconds=30))
    ]


def test_a_lost_worker_that_heartbeats_is_back_and_that_is_an_event(studio: Studio) -> None:
    owner, project_id = funded(studio)
    worker = name("w")
    studio.claim_task(queue(studio, project_id, owner), worker, now=datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(minutes=5)
    studio.sweep_lost_workers(later)
    head = studio.head_position()
    studio.heartbeat(worker, now=later + timedelta(seconds=1))
    back: Any = studio.repository.get(Worker.id_for(worker))
    assert studio.head_position() > head and back.lost is False


def test_a_lost_event_stored_before_it_carried_last_seen_still_replays(studio: Studio) -> None:
    worker_id = name("w")
    at = datetime(2026, 11, 1, tzinfo=UTC)
    worker = Worker.register(worker_id, at)
    studio.save(worker)
    old_shape = studio.mapper.transcoder.encode(
        {"timestamp": at, "originator_topic": "darkroom.worker", "at": at}
    )
    studio.recorder.insert_events(
        [
            StoredEvent(
                originator_id=worker.id,
                originator_version=2,
                topic="darkroom.worker.lost",
                state=old_shape,
            )
        ]
    )
    replayed: Any = studio.repository.get(worker.id)
    assert (replayed.lost, replayed.last_seen, replayed.version) == (True, at, 2)


def test_a_heartbeat_after_a_long_silence_is_an_event_a_concurrent_sweep_conflicts_with(
    studio: Studio,
) -> None:
    """Without it a sweep that read the pulse just before the heartbeat would requeue the
    worker's task although the heartbeat was acknowledged with nothing to stop."""
    owner, project_id = funded(studio)
    worker = name("w")
    task_id = queue(studio, project_id, owner)
    start = datetime.now(UTC)
    studio.claim_task(task_id, worker, now=start)
    version = studio.repository.get(Worker.id_for(worker)).version
    late = start + QUIET_GAP + timedelta(seconds=91)
    studio.heartbeat(worker, [task_id], now=late)
    seen: Any = studio.repository.get(Worker.id_for(worker))
    assert (seen.version, seen.last_seen) == (version + 1, late)
    assert studio.sweep_lost_workers(late + timedelta(seconds=60))["lost_workers"] == []
    assert task(studio, task_id).status == IN_PROGRESS


def test_the_pulse_keeps_each_workers_last_report_and_a_beat_without_one_keeps_it(
    studio: Studio, elsewhere: Studio
) -> None:
    worker = name("w")
    start = datetime.now(UTC)
    studio.heartbeat(worker, now=start, report=Report("busy", "tiny-sd", 3100, 24_000))
    studio.heartbeat(worker, now=start + timedelta(seconds=1), report=Report(vram_used_mb=1))
    studio.heartbeat(worker, now=start + timedelta(seconds=2), report=Report(status="idle"))
    [beat] = [b for b in elsewhere.pulse.beats(start) if b.worker_id == worker]
    # The VRAM-only beat came inside the write interval: it waits for the next write,
    # which the status change made, carrying both.
    assert (beat.last_seen, beat.report) == (
        start + timedelta(seconds=2),
        Report("idle", "tiny-sd", 1, 24_000),
    )
    assert worker not in {b.worker_id for b in elsewhere.pulse.beats(start + timedelta(seconds=3))}


def test_the_workers_listing_says_alive_silent_or_lost_and_what_each_holds(studio: Studio) -> None:
    owner, project_id = funded(studio)
    busy, quiet = name("w"), name("w")
    task_id = queue(studio, project_id, owner)
    start = datetime.now(UTC)
    studio.claim_task(task_id, busy, now=start)
    studio.heartbeat(busy, [task_id], now=start, report=Report(current_model="tiny-sd"))
    studio.heartbeat(quiet, now=start - timedelta(seconds=150))
    rows = {r["worker_id"]: r for r in studio.workers(start + timedelta(seconds=1))}
    assert (rows[busy]["liveness"], rows[busy]["current_model"]) == ("alive", "tiny-sd")
    assert [h["task_id"] for h in rows[busy]["held_tasks"]] == [str(task_id)]
    assert rows[quiet]["liveness"] == "silent" and rows[quiet]["held_tasks"] == []
    studio.sweep_lost_workers(start + timedelta(seconds=200))
    rows = {r["worker_id"]: r for r in studio.workers(start + timedelta(seconds=201))}
    assert (rows[busy]["liveness"], rows[busy]["held_tasks"]) == ("lost", [])
    assert rows[busy]["current_model"] == "tiny-sd"


def test_a_pulse_table_from_before_reports_gains_their_columns(
    studio: Studio, database: Database, schema: str
) -> None:
    table = f"{studio.recorder.events_table_name}_pulse"  # type: ignore[attr-defined]
    with studio.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
        conn.execute(
            f'ALTER TABLE "{schema}"."{table}" DROP COLUMN status, '
            "DROP COLUMN current_model, DROP COLUMN vram_used_mb, "
            "DROP COLUMN vram_total_mb"
        )
    pulse = PostgresPulse(studio.recorder)
    worker = name("w")
    pulse.touch(worker, datetime.now(UTC), Report(status="up"))
    assert [
        b.report.status
        for b in pulse.beats(datetime.now(UTC) - timedelta(minutes=1))
        if b.worker_id == worker
    ] == ["up"]
