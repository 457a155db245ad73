"""GroupCommitRecorder: gap-free under concurrent writers, conflicts isolated per caller.

Every test runs against the real (embedded) PostgreSQL. Tests that state the
library's contract run against the library's own recorder too.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    ApplicationRecorder,
    DataError,
    IntegrityError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import Environment

from darkroom.database import Database
from darkroom.eventstore import RECORDER_TOPIC, GroupCommitRecorder, RecorderClosedError
from tests.darkroom.eventstore_harness import (
    AppendSpy,
    Call,
    MakeRecorder,
    _names,
    all_ids,
    events_for,
    group_recorder,
    make_recorder,
    queue_behind_lock,
    transactions_of,
    wait_until,
)

__all__ = ["group_recorder", "make_recorder"]  # fixtures, used by name

# ------------------------------------------------------------------ gap-free


def test_a_tailing_reader_sees_every_event_exactly_once_in_order_while_sixteen_writers_commit(
    group_recorder: GroupCommitRecorder,
) -> None:
    writers, calls_per_writer = 16, 640  # 1-3 events per call: ≈ 20,500 events
    recorder = group_recorder
    polled: list[int] = []
    subscribed: list[int] = []
    returned: list[list[int]] = [[] for _ in range(writers)]
    done = threading.Event()

    def poll() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read before the query: then nothing is missed
            page = recorder.select_notifications(last, 1000, inclusive_of_start=False)
            polled.extend(n.id for n in page)
            last = page[-1].id if page else last
            if finished and not page:
                return
            if not page:
                time.sleep(0.002)

    def write(index: int) -> None:
        for call in range(calls_per_writer):
            size = 1 + (index + call) % 3
            returned[index] += recorder.insert_events(events_for(uuid.uuid4(), *range(1, size + 1)))

    subscription = recorder.subscribe(gt=0)

    def follow() -> None:
        subscribed.extend(n.id for n in subscription)

    readers = [threading.Thread(target=poll), threading.Thread(target=follow)]
    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in readers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    stored = all_ids(recorder)
    wait_until(lambda: len(subscribed) >= len(stored), timeout=30)
    subscription.stop()
    for thread in readers:
        thread.join(30)

    assert len(stored) >= 20_000
    assert sorted(itertools.chain(*returned)) == stored
    for seen in (polled, subscribed):
        assert all(a < b for a, b in itertools.pairwise(seen)), "out of order or repeated"
        assert seen == stored, f"skipped {len(set(stored) - set(seen))} events"


def test_writers_on_several_datastores_and_the_library_recorder_leave_no_gaps_for_a_reader(
    make_recorder: MakeRecorder,
) -> None:
    # Four datastores (four connection pools, as four processes would have) on
    # one table: three group-commit leaders and the library's recorder. Only
    # the shared table lock keeps commit order equal to id order across them.
    name = f"T{next(_names)}"
    groups = [make_recorder("group", name) for _ in range(3)]
    library = make_recorder("default", name)
    seen: list[int] = []
    done = threading.Event()

    def poll() -> None:
        last = 0
        while True:
            finished = done.is_set()
            page = library.select_notifications(last, 1000, inclusive_of_start=False)
            seen.extend(n.id for n in page)
            last = page[-1].id if page else last
            if finished and not page:
                return

    def write(recorder: ApplicationRecorder, calls: int) -> None:
        for _ in range(calls):
            recorder.insert_events(events_for(uuid.uuid4(), 1, 2))

    threads = [threading.Thread(target=write, args=(g, 100)) for g in groups for _ in range(4)]
    threads += [threading.Thread(target=write, args=(library, 30)) for _ in range(4)]
    reader = threading.Thread(target=poll)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join(30)

    stored = all_ids(library)
    assert len(stored) == (3 * 4 * 100 + 4 * 30) * 2
    assert seen == stored, f"skipped {len(set(stored) - set(seen))} events"


# ----------------------------------------------------------------- contract


@pytest.mark.parametrize("kind", ["default", "group"])
def test_returned_notification_ids_match_what_select_notifications_returns(
    make_recorder: MakeRecorder,
    kind: str,
) -> None:
    recorder = make_recorder(kind)
    returned: dict[uuid.UUID, list[int]] = {}

    def write(_: int) -> None:
        for _ in range(20):
            aggregate_id = uuid.uuid4()
            returned[aggregate_id] = list(
                recorder.insert_events(events_for(aggregate_id, 1, 2, 3)) or []
            )

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    by_id = {
        n.id: (n.originator_id, n.originator_version)
        for n in recorder.select_notifications(None, 10_000)
    }
    assert len(by_id) == 8 * 20 * 3
    for aggregate_id, ids in returned.items():
        assert [by_id[i] for i in ids] == [(aggregate_id, v) for v in (1, 2, 3)]


@pytest.mark.parametrize("kind", ["default", "group"])
def test_a_conflicting_writer_gets_integrity_error_and_stores_nothing(
    make_recorder: MakeRecorder,
    kind: str,
) -> None:
    recorder = make_recorder(kind)
    aggregate_id = uuid.uuid4()
    recorder.insert_events(events_for(aggregate_id, 1))

    with pytest.raises(IntegrityError):
        recorder.insert_events(events_for(aggregate_id, 2, 1))  # version 1 is taken

    assert [e.originator_version for e in recorder.select_events(aggregate_id)] == [1]


def test_a_conflicting_writer_in_a_batch_gets_integrity_error_while_its_batchmates_commit(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = group_recorder
    batch_sizes: list[int] = []
    commit_batch = recorder._commit_batch

    def spy(batch: list[Any]) -> None:
        batch_sizes.append(len(batch))
        commit_batch(batch)

    monkeypatch.setattr(recorder, "_commit_batch", spy)
    taken, contested = uuid.uuid4(), uuid.uuid4()
    recorder.insert_events(events_for(taken, 1, 2))
    fresh = [uuid.uuid4() for _ in range(4)]
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        ("a", events_for(fresh[0], 1, 2), {}),
        ("stale", events_for(taken, 2, 3), {}),  # version 2 exists: optimistic conflict
        ("b", events_for(fresh[1], 1), {"command_key": "cmd-b", "command_result": {"n": 1}}),
        ("first", events_for(contested, 1), {}),
        ("second", events_for(contested, 1), {}),  # same batch, same version: loses
        ("c", events_for(fresh[2], 1, 2, 3), {}),
        ("same-key", events_for(fresh[3], 1), {"command_key": "cmd-b"}),  # key taken in batch
    ]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    for name in ("stale", "second", "same-key"):
        assert isinstance(outcomes[name], IntegrityError), name
    winners = ["a", "b", "first", "c"]
    for name in winners:
        assert isinstance(outcomes[name], list), (name, outcomes[name])
    assert batch_sizes == [1, 1, len(calls) - 1]  # setup, leader, then all the rest
    committed = list(itertools.chain(*(outcomes[n] for n in winners)))
    assert [e.originator_version for e in recorder.select_events(taken)] == [1, 2]
    assert recorder.select_events(fresh[3]) == []
    assert recorder.command_result("cmd-b") == {"n": 1, "position": outcomes["b"][-1]}
    assert all_ids(recorder) == sorted([*outcomes["leader"], *committed, 1, 2])


def test_a_batch_with_conflicts_is_written_in_one_call_and_only_the_conflicting_callers_fail(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = group_recorder
    hot, warm, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    recorder.insert_events(events_for(hot, 1, 2, 3, 4, 5))
    recorder.insert_events(events_for(warm, 1), command_key="stored", command_result={"n": 0})
    spy = AppendSpy(recorder, monkeypatch)
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        *[(f"stale{i}", events_for(hot, 5), {}) for i in range(5)],  # all lose to the table
        # Loses to the table on version 5, so it does not take 6 from "next"...
        ("partly-stale", events_for(hot, 5, 6), {}),
        ("next", events_for(hot, 6, 7), {}),  # ...which wins 6 and 7
        ("late", events_for(hot, 7), {}),  # loses to "next", an earlier batchmate
        ("fresh", events_for(other, 1, 2), {}),
        ("replay", events_for(uuid.uuid4(), 1), {"command_key": "stored"}),  # key is stored
        ("cmd", events_for(warm, 2), {"command_key": "k", "command_result": {"n": 1}}),
        ("cmd-again", events_for(uuid.uuid4(), 1), {"command_key": "k"}),  # batchmate has it
        ("cmd-only", [], {"command_key": "only", "command_result": {"n": 2}}),
        ("cmd-only-again", [], {"command_key": "only", "command_result": {"n": 3}}),
        *[(f"more{i}", events_for(hot, 8), {}) for i in range(3)],  # first one wins
    ]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    losers = ["partly-stale", "late", "replay", "cmd-again", "cmd-only-again", "more1", "more2"]
    losers += [f"stale{i}" for i in range(5)]
    winners = ["leader", "next", "fresh", "cmd", "cmd-only", "more0"]
    for name in losers:
        assert isinstance(outcomes[name], IntegrityError), (name, outcomes[name])
    for name in winners:
        assert isinstance(outcomes[name], list), (name, outcomes[name])
    # The whole batch, conflicts and all, cost one call of the append function.
    assert spy.appends == [1, len(calls) - 1]
    assert spy.isolated == 0
    assert (
        transactions_of(
            database,
            schema,
            recorder.events_table_name,
            [*outcomes["next"], *outcomes["fresh"], *outcomes["more0"]],
        )
        == 1
    )
    history = recorder.select_history(hot)
    assert [h["originator_version"] for h in history] == list(range(1, 9))
    assert [h["notification_id"] for h in history[5:]] == [*outcomes["next"], *outcomes["more0"]]
    assert [h["notification_id"] for h in recorder.select_history(other)] == outcomes["fresh"]
    assert recorder.command_result("stored") == {"n": 0, "position": 6}
    assert recorder.command_result("k") == {"n": 1, "position": outcomes["cmd"][-1]}
    # A command with no events takes the head after its batch, as before.
    assert recorder.command_result("only") == {"n": 2, "position": recorder.head_position()}
    winning_ids = itertools.chain(*(outcomes[n] for n in winners))
    assert all_ids(recorder) == sorted([*range(1, 7), *winning_ids])


def test_a_command_key_replayed_in_the_same_batch_fails_only_the_replay(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = group_recorder
    spy = AppendSpy(recorder, monkeypatch)
    first, replay, bystander = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        ("first", events_for(first, 1), {"command_key": "c", "command_result": {"n": 1}}),
        ("bystander", events_for(bystander, 1, 2), {}),
        ("replay", events_for(replay, 1), {"command_key": "c", "command_result": {"n": 2}}),
    ]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    assert isinstance(outcomes["replay"], IntegrityError)
    assert len(outcomes["first"]) == 1 and len(outcomes["bystander"]) == 2
    assert recorder.select_events(replay) == []
    assert recorder.command_result("c") == {"n": 1, "position": outcomes["first"][0]}
    assert spy.appends == [1, 3] and spy.isolated == 0


def test_a_batch_whose_only_conflict_is_with_a_stored_row_still_takes_one_call(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No two batchmates share a key, so the function tries the plain insert
    # first; the unique violation sends it down the checked path in the same call.
    recorder = group_recorder
    taken = uuid.uuid4()
    recorder.insert_events(events_for(taken, 1))
    spy = AppendSpy(recorder, monkeypatch)
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        ("a", events_for(uuid.uuid4(), 1), {"command_key": "a", "command_result": {}}),
        ("stale", events_for(taken, 1), {"command_key": "s", "command_result": {}}),
        ("b", events_for(uuid.uuid4(), 1, 2), {}),
    ]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    assert isinstance(outcomes["stale"], IntegrityError)
    assert recorder.command_result("s") is None
    assert recorder.command_result("a") == {"position": outcomes["a"][0]}
    assert outcomes["b"] == [outcomes["a"][0] + 1, outcomes["a"][0] + 2]
    assert spy.appends == [1, 3] and spy.isolated == 0
    # A lone conflicting call is turned away by the same function call.
    with pytest.raises(IntegrityError):
        recorder.insert_events(events_for(taken, 1))
    assert spy.appends == [1, 3, 1] and spy.isolated == 0


def test_a_call_repeating_one_of_its_own_versions_fails_before_reaching_the_database(
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = AppendSpy(group_recorder, monkeypatch)
    aggregate_id = uuid.uuid4()

    with pytest.raises(IntegrityError):
        group_recorder.insert_events(events_for(aggregate_id, 1, 1))

    assert spy.appends == []
    assert group_recorder.select_events(aggregate_id) == []


def test_a_bad_value_in_a_batch_still_fails_only_its_caller_through_the_savepoint_fallback(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = group_recorder
    spy = AppendSpy(recorder, monkeypatch)
    bad = uuid.uuid4()
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        ("a", events_for(uuid.uuid4(), 1), {}),
        ("bad", [StoredEvent(bad, 1, "tests:Bad\x00Topic", b"{}")], {}),  # text cannot hold NUL
        ("b", events_for(uuid.uuid4(), 1), {}),
    ]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    assert isinstance(outcomes["bad"], DataError), outcomes["bad"]
    assert isinstance(outcomes["a"], list) and isinstance(outcomes["b"], list)
    assert spy.isolated == 1
    assert recorder.select_events(bad) == []


class HookedRecorder(GroupCommitRecorder):
    """Writes a side row per call through the library's hook, as tracking records are."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.side_table = psycopg.sql.Identifier(self.datastore.schema, f"{events_table_name}_side")
        self.sql_create_statements.append(
            psycopg.sql.SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY)").format(
                self.side_table
            )
        )

    def _insert_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
        name = kwargs.get("side")
        if name is not None:
            curs.execute(
                psycopg.sql.SQL("INSERT INTO {} VALUES (%s)").format(self.side_table), (name,)
            )

    def side_rows(self) -> list[str]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                psycopg.sql.SQL("SELECT name FROM {} ORDER BY name").format(self.side_table)
            )
            return [row["name"] for row in curs.fetchall()]


def test_hook_rows_are_written_only_for_the_calls_that_win_and_a_hook_conflict_fails_alone(
    database: Database,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = database.eventsourcing_env(schema, pool_size=4)
    env["APPLICATION_RECORDER_TOPIC"] = f"{__name__}:HookedRecorder"
    factory = PostgresFactory(Environment(f"T{next(_names)}", env))
    try:
        recorder = factory.application_recorder()
        assert isinstance(recorder, HookedRecorder) and recorder._has_insert_hook
        taken = uuid.uuid4()
        recorder.insert_events(events_for(taken, 1), side="setup")
        spy = AppendSpy(recorder, monkeypatch)
        calls: list[Call] = [
            ("leader", events_for(uuid.uuid4(), 1), {"side": "leader"}),
            ("stale", events_for(taken, 1), {"side": "stale"}),  # loses to the table
            ("a", events_for(taken, 2), {"side": "a"}),
            ("a-again", events_for(taken, 2), {"side": "a-again"}),  # loses to "a"
            ("b", events_for(uuid.uuid4(), 1), {"side": "b"}),
        ]

        outcomes = queue_behind_lock(database, schema, recorder, calls)

        for name in ("stale", "a-again"):
            assert isinstance(outcomes[name], IntegrityError), name
        assert recorder.side_rows() == ["a", "b", "leader", "setup"]
        assert spy.appends == [1, 4] and spy.isolated == 0

        # A hook's own conflict aborts the shared transaction: the savepoint
        # fallback fails that caller alone.
        calls = [
            ("leader", events_for(uuid.uuid4(), 1), {"side": "leader2"}),
            ("c", events_for(uuid.uuid4(), 1), {"side": "c"}),
            ("dup", events_for(uuid.uuid4(), 1), {"side": "b"}),  # side row exists
            ("stale", events_for(taken, 1), {"side": "stale"}),
        ]
        outcomes = queue_behind_lock(database, schema, recorder, calls)
        assert isinstance(outcomes["dup"], IntegrityError)
        assert isinstance(outcomes["stale"], IntegrityError)
        assert isinstance(outcomes["c"], list)
        assert recorder.side_rows() == ["a", "b", "c", "leader", "leader2", "setup"]
        assert spy.isolated == 1
    finally:
        factory.close()


def test_many_threads_saving_one_aggregate_never_need_the_savepoint_fallback(
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The hot-aggregate shape: every thread reads the head version and tries
    # to write the next one. Conflicts are sorted out inside each batch's call.
    recorder = group_recorder
    spy = AppendSpy(recorder, monkeypatch)
    aggregate_id = uuid.uuid4()
    recorder.insert_events(events_for(aggregate_id, 1))
    wins = [0] * 20
    deadline = time.monotonic() + 1.5

    def work(index: int) -> None:
        while time.monotonic() < deadline:
            head = len(recorder.select_events(aggregate_id))
            try:
                recorder.insert_events(events_for(aggregate_id, head + 1))
            except IntegrityError:
                continue
            wins[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(wins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    versions = [e.originator_version for e in recorder.select_events(aggregate_id)]
    assert versions == list(range(1, sum(wins) + 2))
    assert sum(wins) > 10
    assert max(spy.appends) > 1  # conflicting callers did share batches
    assert spy.isolated == 0


def test_concurrent_calls_share_one_transaction_and_each_gets_its_own_ids_in_order(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
) -> None:
    recorder = group_recorder
    aggregates = [uuid.uuid4() for _ in range(10)]
    calls: list[Call] = [
        (f"w{i}", events_for(a, *range(1, i % 3 + 2)), {}) for i, a in enumerate(aggregates)
    ]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    batch = list(itertools.chain(*(outcomes[f"w{i}"] for i in range(1, 10))))
    assert transactions_of(database, schema, recorder.events_table_name, batch) == 1
    for i, aggregate_id in enumerate(aggregates):
        history = recorder.select_history(aggregate_id)
        assert [h["notification_id"] for h in history] == outcomes[f"w{i}"]
        assert outcomes[f"w{i}"] == sorted(outcomes[f"w{i}"])


def test_every_caller_in_a_batch_that_fails_to_commit_gets_the_exception(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = group_recorder
    write_together = recorder._write_together

    def fail_batches(batch: list[Any]) -> Any:
        if len(batch) > 1:
            raise RuntimeError("disk on fire")
        return write_together(batch)

    monkeypatch.setattr(recorder, "_write_together", fail_batches)
    calls: list[Call] = [(f"w{i}", events_for(uuid.uuid4(), 1), {}) for i in range(6)]

    outcomes = queue_behind_lock(database, schema, recorder, calls)

    assert isinstance(outcomes["w0"], list)
    for i in range(1, 6):
        assert isinstance(outcomes[f"w{i}"], RuntimeError)
        assert str(outcomes[f"w{i}"]) == "disk on fire"
    assert outcomes["w1"] is not outcomes["w2"]  # each thread raises its own copy
    monkeypatch.undo()
    assert len(recorder.insert_events(events_for(uuid.uuid4(), 1, 2)) or []) == 2


# ------------------------------------------------------------------ commands


def test_command_rows_are_written_atomically_with_the_events_and_command_result_returns_them(
    group_recorder: GroupCommitRecorder,
) -> None:
    recorder = group_recorder
    aggregate_id = uuid.uuid4()

    ids = recorder.insert_events(
        events_for(aggregate_id, 1, 2),
        command_key="create-1",
        command_result={"project_id": str(aggregate_id), "tags": ["a"]},
    )

    assert ids is not None
    assert recorder.command_result("create-1") == {
        "project_id": str(aggregate_id),
        "tags": ["a"],
        "position": ids[-1],
    }
    assert recorder.command_result("unknown") is None


def test_a_second_insert_with_the_same_command_key_raises_integrity_error_and_stores_no_events(
    group_recorder: GroupCommitRecorder,
) -> None:
    recorder = group_recorder
    recorder.insert_events(events_for(uuid.uuid4(), 1), command_key="k", command_result={"n": 1})
    head = recorder.head_position()
    replay = uuid.uuid4()

    with pytest.raises(IntegrityError):
        recorder.insert_events(events_for(replay, 1), command_key="k", command_result={"n": 2})

    assert recorder.select_events(replay) == []
    assert recorder.head_position() == head
    assert recorder.command_result("k") == {"n": 1, "position": head}


def test_a_command_whose_events_conflict_records_no_command_row(
    group_recorder: GroupCommitRecorder,
) -> None:
    recorder = group_recorder
    aggregate_id = uuid.uuid4()
    recorder.insert_events(events_for(aggregate_id, 1))

    with pytest.raises(IntegrityError):
        recorder.insert_events(events_for(aggregate_id, 1), command_key="lost", command_result={})

    assert recorder.command_result("lost") is None


def test_a_command_with_no_events_still_records_its_result(
    group_recorder: GroupCommitRecorder,
) -> None:
    recorder = group_recorder
    assert recorder.insert_events([], command_key="first", command_result={}) == []
    head = (recorder.insert_events(events_for(uuid.uuid4(), 1, 2)) or [])[-1]

    assert recorder.insert_events([], command_key="noop", command_result={"changed": False}) == []

    # No events of its own: its position is the head it committed at.
    assert recorder.command_result("first") == {"position": 0}
    assert recorder.command_result("noop") == {"changed": False, "position": head}
    with pytest.raises(IntegrityError):
        recorder.insert_events([], command_key="noop", command_result={})


def test_a_command_result_that_is_not_json_fails_only_its_caller(
    group_recorder: GroupCommitRecorder,
) -> None:
    with pytest.raises(TypeError):
        group_recorder.insert_events(
            events_for(uuid.uuid4(), 1), command_key="bad", command_result={"at": object()}
        )

    assert group_recorder.command_result("bad") is None
    assert group_recorder.head_position() == 0


# ------------------------------------------------------------------- reading


def test_head_position_is_zero_for_an_empty_log_then_the_highest_id(
    group_recorder: GroupCommitRecorder,
) -> None:
    assert group_recorder.head_position() == 0

    ids = group_recorder.insert_events(events_for(uuid.uuid4(), 1, 2, 3))

    assert ids is not None
    assert group_recorder.head_position() == ids[-1]


def test_select_history_returns_one_aggregates_events_ordered_by_version(
    group_recorder: GroupCommitRecorder,
) -> None:
    recorder = group_recorder
    aggregate_id = uuid.uuid4()
    first = recorder.insert_events(events_for(aggregate_id, 1, 2)) or []
    recorder.insert_events(events_for(uuid.uuid4(), 1))
    second = recorder.insert_events(events_for(aggregate_id, 3)) or []

    history = recorder.select_history(aggregate_id)

    assert history == [
        {
            "notification_id": n,
            "originator_version": v,
            "topic": "tests:Event",
            "state": f'{{"v": {v}}}'.encode(),
        }
        for n, v in zip([*first, *second], (1, 2, 3), strict=True)
    ]


# --------------------------------------------------------------- application


class Counter(Aggregate):
    TOPIC = "tests.darkroom.test_eventstore:Counter"

    class Created(Aggregate.Created):
        TOPIC = "tests.darkroom.test_eventstore:Counter.Created"

    class Incremented(Aggregate.Event):
        TOPIC = "tests.darkroom.test_eventstore:Counter.Incremented"

    def __init__(self) -> None:
        self.value = 0

    @event(Incremented)
    def increment(self) -> None:
        self.value += 1


def test_an_application_plugs_the_recorder_in_by_topic_and_passes_command_keys_through_save(
    database: Database,
    schema: str,
) -> None:
    env = database.eventsourcing_env(schema, pool_size=2)
    env["APPLICATION_RECORDER_TOPIC"] = RECORDER_TOPIC
    app: Application[uuid.UUID] = Application(env=env)
    try:
        assert isinstance(app.recorder, GroupCommitRecorder)
        assert isinstance(app.recorder, PostgresApplicationRecorder)
        counter = Counter()
        counter.increment()

        recordings = app.save(counter, command_key="c-1", command_result={"id": str(counter.id)})

        assert app.repository.get(counter.id).value == 1
        position = recordings[-1].notification.id
        assert app.recorder.command_result("c-1") == {"id": str(counter.id), "position": position}
    finally:
        app.close()
    with pytest.raises(RecorderClosedError):
        app.recorder.insert_events(events_for(uuid.uuid4(), 1))


def test_processes_starting_together_create_the_same_tables_without_a_conflict(
    make_recorder: MakeRecorder,
) -> None:
    # Replicas started at once each run the recorder's DDL (CREATE OR REPLACE FUNCTION
    # among it); two at the same moment failed with "tuple concurrently updated".
    make_recorder("group", name="Shared")
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        try:
            barrier.wait()
            make_recorder("group", name="Shared")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
