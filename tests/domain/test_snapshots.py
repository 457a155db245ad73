"""Snapshots and the aggregate cache: loads stay bounded and never change what history shows."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.credits import CreditLedger
from domain.errors import ConcurrencyConflictError
from domain.generation import Generation
from domain.project import Project
from domain.repository import SnapshottingRepository, copy_state
from domain.roster import WorkerRoster
from domain.shot import Shot
from domain.snapshot_writer import SnapshotWriter
from domain.snapshots import SNAPSHOT_TOPIC, StateSnapshot, usable_state
from domain.studio import SNAPSHOT_INTERVALS, Studio
from domain.user import User
from domain.worker import Worker
from domain.workload import Workload

INTERVAL = SNAPSHOT_INTERVALS[Generation]


@pytest.fixture(scope="module")
def plain(database: Database, schema: str, studio: Studio) -> Iterator[Studio]:
    """Today's path on the same schema: no snapshots, no cache, every load replays."""
    app = build_studio(database, schema, pool_size=2, snapshots=False, cache_size=0)
    yield app
    app.close()


def grown(studio: Studio, edits: int) -> UUID:
    project = studio.create_project("alice", "Snapshots")["project_id"]
    ident = UUID(studio.create_generation(project, "alice", "file:///a.png")["generation_id"])
    for i in range(edits):
        studio.star_generation(ident, "alice", i % 2 == 0)
    assert studio.flush_snapshots()
    return ident


def state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def snapshot_versions(studio: Studio, ident: UUID) -> list[int]:
    return [row["version"] for row in studio.stored_snapshots(ident)]


def test_a_save_that_crosses_the_interval_stores_a_snapshot_of_the_saved_state(
    studio: Studio, plain: Studio
) -> None:
    ident = grown(studio, 2 * INTERVAL + 5)
    # The one at INTERVAL was taken too, and pruned (darkroom/housekeeping.py) once a
    # newer one of the same thousand versions was stored.
    assert snapshot_versions(studio, ident) == [2 * INTERVAL]
    assert state(studio.repository.get(ident)) == state(plain.repository.get(ident))


def test_a_load_replays_only_the_events_after_the_latest_snapshot(studio: Studio) -> None:
    ident = grown(studio, INTERVAL + 3)
    seen: list[int] = []
    original = studio.events.get

    def counting(*args: Any, **kwargs: Any) -> Any:
        events = list(original(*args, **kwargs))
        seen.extend(e.originator_version for e in events)
        return events

    studio.events.get = counting  # type: ignore[method-assign]
    try:
        aggregate = studio.repository.get(ident, version=INTERVAL + 2)
    finally:
        del studio.events.get
    assert aggregate.version == INTERVAL + 2
    assert seen == [INTERVAL + 1, INTERVAL + 2]


@pytest.mark.parametrize("version", [1, INTERVAL - 1, INTERVAL, INTERVAL + 1, 2 * INTERVAL + 3])
def test_time_travel_with_snapshots_equals_a_full_replay(
    studio: Studio, plain: Studio, version: int
) -> None:
    ident = grown(studio, 2 * INTERVAL + 5)
    with_snapshots = studio.aggregate_at(ident, version=version)
    replayed = plain.aggregate_at(ident, version=version)
    assert state(with_snapshots) == state(replayed)


def test_a_snapshot_of_an_older_class_version_is_ignored_without_an_upcaster(
    database: Database, schema: str, studio: Studio, plain: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = grown(studio, INTERVAL + 1)
    before = SnapshottingRepository.ignored
    monkeypatch.setattr(Generation, "class_version", 2, raising=False)
    fresh = build_studio(database, schema, pool_size=1, cache_size=0)
    try:
        loaded = fresh.repository.get(ident)
        assert state(loaded) == state(plain.repository.get(ident))
        assert SnapshottingRepository.ignored == before + 1
        # The replay was a whole interval or more: a snapshot of this version replaces it
        # (the unusable one is pruned as older in the same thousand versions).
        assert fresh.flush_snapshots()
        assert [(r["version"], r["usable"]) for r in fresh.stored_snapshots(ident)] == [
            (loaded.version, True)
        ]
    finally:
        fresh.close()


def test_a_snapshot_of_an_older_class_version_is_upcast_when_the_class_says_how(
    database: Database, schema: str, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = grown(studio, INTERVAL + 1)
    before = SnapshottingRepository.ignored

    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["upcast"] = True

    monkeypatch.setattr(Generation, "class_version", 2, raising=False)
    monkeypatch.setattr(Generation, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False)
    fresh = build_studio(database, schema, pool_size=1, cache_size=0)
    try:
        loaded: Any = fresh.repository.get(ident)
        assert loaded.upcast is True and loaded.version == studio.repository.get(ident).version
        assert SnapshottingRepository.ignored == before
    finally:
        fresh.close()


class Evil:
    def __reduce__(self) -> Any:
        return (print, ("a snapshot ran code",))


def crafted(module: str, name: str) -> bytes:
    """A pickle that calls `module.name("os:getcwd")`, as the review's exploit did (pickle
    itself refuses to write one for a name that does not resolve to the same object)."""
    arg = b"os:getcwd"
    return (
        b"\x80\x04c"
        + module.encode()
        + b"\n"
        + name.encode()
        + b"\n("
        + b"\x8c"
        + bytes([len(arg)])
        + arg
        + b"tR."
    )


def forged_row(
    ident: UUID,
    version: int,
    payload: Any,
    *,
    topic: str = SNAPSHOT_TOPIC,
    aggregate_topic: str = "darkroom.generation",
) -> StoredEvent:
    state = (
        payload
        if isinstance(payload, bytes)
        else pickle.dumps(
            {"topic": aggregate_topic, "timestamp": None, "state": payload}, protocol=5
        )
    )
    return StoredEvent(originator_id=ident, originator_version=version, topic=topic, state=state)


@pytest.mark.parametrize(
    "row",
    [
        lambda ident: forged_row(ident, 2, {"x": Evil()}),
        lambda ident: forged_row(ident, 2, crafted("domain.snapshots", "resolve_topic")),
        lambda ident: forged_row(ident, 2, crafted("domain.snapshots", "pickle.loads")),
        lambda ident: forged_row(ident, 2, {}, topic="os:system"),
        lambda ident: forged_row(ident, 2, {}, aggregate_topic="subprocess:Popen"),
    ],
    ids=["stdlib callable", "domain callable", "dotted name", "row topic", "aggregate topic"],
)
def test_a_snapshot_row_that_names_anything_but_state_is_refused_and_replayed(
    studio: Studio, plain: Studio, row: Any
) -> None:
    ident = grown(studio, 3)
    assert studio.snapshots is not None
    studio.snapshots.recorder.insert_events([row(ident)])
    before = SnapshottingRepository.ignored
    loaded = studio.repository.get(ident, version=3)
    assert SnapshottingRepository.ignored == before + 1
    assert state(loaded) == state(plain.repository.get(ident, version=3))


def test_a_snapshot_of_another_layout_of_the_value_classes_is_ignored(
    studio: Studio, plain: Studio
) -> None:
    ident = grown(studio, INTERVAL + 1)
    assert studio.snapshots is not None
    taken = StateSnapshot.take(plain.repository.get(ident, version=INTERVAL + 1))
    taken.state["value_layout"] = "an older layout"
    object.__setattr__(taken, "originator_version", INTERVAL + 1)
    studio.snapshots.put([taken])
    before = SnapshottingRepository.ignored
    loaded = studio.repository.get(ident, version=INTERVAL + 2)
    assert SnapshottingRepository.ignored == before + 1
    assert state(loaded) == state(plain.repository.get(ident, version=INTERVAL + 2))


def test_copying_state_that_shares_containers_copies_each_once() -> None:
    """A forged snapshot of nested shared lists made the copy run forever."""
    shared: list[Any] = []
    for _ in range(200):
        shared = [shared, shared]
    started = time.monotonic()
    copied = copy_state({"x": shared})
    assert time.monotonic() - started < 1
    assert copied["x"] is not shared and copied["x"][0] is copied["x"][1]


def test_a_stream_that_grew_without_snapshots_gets_one_at_its_first_long_load(
    database: Database, schema: str, plain: Studio
) -> None:
    project = plain.create_project("alice", "Old")["project_id"]
    ident = UUID(plain.create_generation(project, "alice", "file:///o.png")["generation_id"])
    for i in range(INTERVAL + 10):
        plain.star_generation(ident, "alice", i % 2 == 0)
    fresh = build_studio(database, schema, pool_size=1, cache_size=0)
    try:
        assert snapshot_versions(fresh, ident) == []
        version = fresh.repository.get(ident).version
        assert fresh.flush_snapshots()
        assert snapshot_versions(fresh, ident) == [version]
    finally:
        fresh.close()


def test_a_closed_writer_drops_snapshots_instead_of_starting_a_thread(studio: Studio) -> None:
    assert studio.snapshots is not None
    writer = SnapshotWriter(studio.snapshots)
    writer.close()
    writer.put([StateSnapshot.take(Project.start("alice", "Late"))])
    assert writer._thread is None and writer.flush(0.1)


def test_the_cache_hands_out_copies_so_an_unsaved_change_is_forgotten(studio: Studio) -> None:
    ident = grown(studio, 1)
    first: Any = studio.repository.get(ident)
    was = first.starred
    first.star(not was)
    again: Any = studio.repository.get(ident)
    assert (again.starred, again.version) == (was, first.version - 1)


def test_a_cached_aggregate_sees_what_another_process_wrote(
    database: Database, schema: str, studio: Studio
) -> None:
    ident = grown(studio, 1)  # starred
    other = build_studio(database, schema, pool_size=1)
    try:
        studio.repository.get(ident)  # cached here
        other.star_generation(ident, "alice", False)  # written elsewhere
        mine: Any = studio.repository.get(ident)
        assert mine.starred is False
        # A decision on the other process's state, not a stale one: unstarring again
        # changes nothing and writes nothing.
        position = studio.star_generation(ident, "alice", False)["position"]
        assert studio.repository.get(ident).version == mine.version
        assert position >= 0
    finally:
        other.close()


def test_a_stale_decision_costs_a_retry_never_a_wrong_write(
    database: Database, schema: str, studio: Studio
) -> None:
    """Two processes rename one generation from the same cached version: both commands
    succeed, each on the other's result, and the log holds both renames in order."""
    ident = grown(studio, 0)
    other = build_studio(database, schema, pool_size=1)
    try:
        base = studio.repository.get(ident).version
        other.repository.get(ident)
        studio.rename_generation(ident, "alice", "one")
        other.rename_generation(ident, "alice", "two")
        final: Any = studio.repository.get(ident)
        assert (final.name, final.version) == ("two", base + 2)
        names = [
            e.name
            for e in studio.events.get(ident)  # type: ignore[attr-defined]
            if isinstance(e, Generation.Renamed)
        ]
        assert names == ["one", "two"]
    finally:
        other.close()


def test_threads_sharing_a_cached_aggregate_each_get_a_whole_copy(studio: Studio) -> None:
    """Eight threads add variants to one generation through one cache: the cached
    object is fast-forwarded while others copy it, and no command fails or is lost."""
    ident = grown(studio, 0)
    errors: list[BaseException] = []

    def add(n: int) -> None:
        try:
            for i in range(15):
                while True:
                    try:
                        studio.add_variant(ident, "alice", f"file:///{n}-{i}.png")
                        break
                    except ConcurrencyConflictError:
                        continue  # the hot aggregate kept changing: the caller retries
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    final: Any = studio.repository.get(ident)
    assert len(final.variants) == 1 + 8 * 15
    assert state(final) == state(build_plain_copy(studio, ident))


def build_plain_copy(studio: Studio, ident: UUID) -> Any:
    return studio.repository.get(ident, version=studio.repository.get(ident).version)


def one_of_each_snapshotted_kind() -> list[Any]:
    at = datetime.now(UTC)
    user = User.register(f"u-{uuid4()}", at)
    user.issue_token(uuid4(), "laptop", at)
    shot = Shot.start(uuid4(), "Opening", 0)
    shot.add(uuid4(), uuid4(), "image")
    generation = Generation.start(uuid4(), "image", at, params={"seed": 1})
    generation.add_variant(uuid4(), "/media/a.png", at)
    ledger = CreditLedger.open(f"u-{uuid4()}")
    ledger.grant(5, "welcome", at, reference="welcome")
    ledger.charge_task(uuid4(), "0.5", at)
    return [
        Project.start("alice", "P"),
        user,
        WorkerRoster(),
        Worker.register(f"w-{uuid4()}", at),
        Workload.start("alice"),
        shot,
        generation,
        ledger,
    ]


def test_every_snapshotted_kind_round_trips_through_the_snapshot_store(studio: Studio) -> None:
    aggregates = one_of_each_snapshotted_kind()
    assert {type(a) for a in aggregates} == set(SNAPSHOT_INTERVALS)
    assert studio.snapshots is not None
    for aggregate in aggregates:
        aggregate.collect_events()
        studio.snapshots.put([StateSnapshot.take(aggregate)])
        stored = list(studio.snapshots.get(aggregate.id))
        assert state(usable_state(stored[-1])) == state(aggregate), type(aggregate)


def test_a_command_does_not_wait_for_its_snapshot_to_be_stored(studio: Studio) -> None:
    ident = grown(studio, INTERVAL - 5)
    writer = studio.snapshot_writer
    assert writer is not None
    release = threading.Event()
    insert = writer.store.recorder.insert_events

    def slow_insert(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return insert(*args, **kwargs)

    writer.store.recorder.insert_events = slow_insert
    try:
        for i in range(10):  # crosses the interval: a snapshot is queued
            studio.star_generation(ident, "alice", i % 2 == 0)
        assert writer.flush(timeout=0.2) is False  # still held: the commands did not wait
    finally:
        release.set()
        del writer.store.recorder.insert_events
    assert writer.flush()
    assert INTERVAL in snapshot_versions(studio, ident)


def test_a_process_holds_at_most_its_cache_size_of_aggregates(
    database: Database, schema: str
) -> None:
    small = build_studio(database, schema, pool_size=1, cache_size=20)
    try:
        project = small.create_project("alice", "Many")["project_id"]
        made = [
            small.create_generation(project, "alice", f"/media/{i}.png")["generation_id"]
            for i in range(50)
        ]
        for ident in made:
            small.generation(ident)
        cache: Any = small.repository.cache
        assert len(cache.cache) == 20
    finally:
        small.close()
