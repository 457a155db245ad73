"""GroupCommitRecorder's read checks (`command_reads`): a call is refused when the log
holds a newer event of something its decision read, checked under the table lock
of the insert itself; its batchmates are unaffected. Real (embedded) PostgreSQL.
"""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import IntegrityError

from darkroom.database import Database
from darkroom.eventstore import GroupCommitRecorder
from tests.darkroom.eventstore_harness import (
    AppendSpy,
    Call,
    events_for,
    group_recorder,
    make_recorder,
    queue_behind_lock,
)

__all__ = ["group_recorder", "make_recorder"]  # fixtures, used by name


def test_a_call_whose_read_moved_on_is_refused_and_stores_nothing(
    group_recorder: GroupCommitRecorder,
) -> None:
    read, written = uuid.uuid4(), uuid.uuid4()
    group_recorder.insert_events(events_for(read, 1, 2))

    with pytest.raises(IntegrityError):
        group_recorder.insert_events(
            events_for(written, 1), command_reads=[(read, 1)], command_key="k"
        )

    assert group_recorder.select_history(written) == []
    assert group_recorder.command_result("k") is None
    assert group_recorder.insert_events(events_for(written, 1), command_reads=[(read, 2)])


def test_an_id_read_as_absent_refuses_the_call_once_it_has_events(
    group_recorder: GroupCommitRecorder,
) -> None:
    appeared, never, written = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    group_recorder.insert_events(events_for(appeared, 1))

    with pytest.raises(IntegrityError):
        group_recorder.insert_events(events_for(written, 1), command_reads=[(appeared, 0)])
    assert group_recorder.insert_events(events_for(written, 1), command_reads=[(never, 0)])


def test_a_call_that_writes_nothing_still_has_its_reads_checked(
    group_recorder: GroupCommitRecorder,
) -> None:
    read = uuid.uuid4()
    group_recorder.insert_events(events_for(read, 1, 2))

    assert group_recorder.insert_events([], command_reads=[(read, 2)]) == []
    with pytest.raises(IntegrityError):
        group_recorder.insert_events([], command_reads=[(read, 1)])


def test_in_one_batch_only_the_calls_whose_reads_moved_fail_and_the_batch_is_one_call(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read = uuid.uuid4()
    group_recorder.insert_events(events_for(read, 1, 2))
    spy = AppendSpy(group_recorder, monkeypatch)
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        ("stale", events_for(uuid.uuid4(), 1), {"command_reads": [(read, 1)]}),
        ("current", events_for(uuid.uuid4(), 1), {"command_reads": [(read, 2)]}),
        ("keyed", events_for(uuid.uuid4(), 1), {"command_key": "a", "command_result": {}}),
        (
            "stale-keyed",
            events_for(uuid.uuid4(), 1),
            {"command_key": "b", "command_reads": [(read, 0)]},
        ),
    ]

    outcomes = queue_behind_lock(database, schema, group_recorder, calls)

    assert isinstance(outcomes["stale"], IntegrityError)
    assert isinstance(outcomes["stale-keyed"], IntegrityError)
    assert group_recorder.command_result("b") is None
    for name in ("leader", "current", "keyed"):
        assert isinstance(outcomes[name], list), (name, outcomes[name])
    assert group_recorder.command_result("a") == {"position": outcomes["keyed"][0]}
    assert spy.appends == [1, len(calls) - 1]
    assert spy.isolated == 0


def test_a_call_reading_what_an_earlier_batchmate_writes_is_checked_after_that_write(
    database: Database,
    schema: str,
    group_recorder: GroupCommitRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = uuid.uuid4()
    group_recorder.insert_events(events_for(shared, 1))
    spy = AppendSpy(group_recorder, monkeypatch)
    calls: list[Call] = [
        ("leader", events_for(uuid.uuid4(), 1), {}),
        ("writer", events_for(shared, 2), {}),
        # Decided on version 1 while "writer" was deciding on it too: one of them must
        # lose, as if written one by one, and "writer" came first.
        ("reader", events_for(uuid.uuid4(), 1), {"command_reads": [(shared, 1)]}),
        ("unrelated", events_for(uuid.uuid4(), 1), {}),
    ]

    outcomes = queue_behind_lock(database, schema, group_recorder, calls)

    assert isinstance(outcomes["writer"], list)
    assert isinstance(outcomes["reader"], IntegrityError)
    assert isinstance(outcomes["unrelated"], list)
    # The reader started the next batch instead of riding with the write it read.
    assert spy.appends == [1, 1, 2]
