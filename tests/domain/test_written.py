"""A verb's typed result: the JSON the edge sends, and rebuilt the same from what an
idempotency key stored (also from a plain dict stored before results were typed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

import domain.studio  # noqa: F401  (every verb's shape registered)
from domain.services.taskresults import NothingClaimed, ProgressReported, TaskCompleted
from domain.services.written import OMIT_NONE, TAG, AsStored, Written


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SampleWritten(Written):
    STORED_AS = "SampleWritten"

    sample_id: UUID
    balance: Decimal
    member_ids: tuple[UUID, ...] = ()
    frame: int | None = None
    link_id: UUID | None = field(default=None, metadata=OMIT_NONE)


def test_the_json_answer_has_the_fields_in_order_ids_as_strings_then_the_position() -> None:
    ident, member = uuid4(), uuid4()
    written = SampleWritten(
        sample_id=ident, balance=Decimal("1.50"), member_ids=(member,), position=7
    )
    assert json.dumps(written.as_json()) == json.dumps(
        {
            "sample_id": str(ident),
            "balance": "1.50",
            "member_ids": [str(member)],
            "frame": None,
            "position": 7,
        }
    )


def test_replayed_is_in_the_answer_only_when_true_and_an_optional_field_only_when_set() -> None:
    link = uuid4()
    written = SampleWritten(sample_id=uuid4(), balance=Decimal(0), link_id=link, replayed=True)
    body = written.as_json()
    assert body["link_id"] == str(link)
    assert list(body)[-2:] == ["position", "replayed"]
    assert "replayed" not in replace(written, replayed=False).as_json()
    assert "link_id" not in replace(written, link_id=None).as_json()


def test_a_stored_result_rebuilds_as_its_own_class_with_typed_values() -> None:
    written = SampleWritten(
        sample_id=uuid4(), balance=Decimal("2.25"), member_ids=(uuid4(), uuid4()), link_id=uuid4()
    )
    stored = json.loads(json.dumps(written.stored()))
    assert stored[TAG] == "SampleWritten"
    assert "position" not in stored
    again = Written.rebuild(stored, position=12)
    assert again == replace(written, position=12, replayed=True)


def test_a_plain_dict_stored_before_tags_rebuilds_as_the_class_with_its_fields() -> None:
    ident = uuid4()
    again = Written.rebuild({"sample_id": str(ident), "balance": "3", "frame": 4}, position=2)
    assert isinstance(again, SampleWritten)
    assert (again.sample_id, again.balance, again.frame) == (ident, Decimal(3), 4)


def test_a_plain_dict_of_no_known_shape_is_refused_by_name() -> None:
    with pytest.raises(LookupError, match="no_such_field"):
        Written.rebuild({"no_such_field": 1}, position=0)


def test_every_shape_compares_as_its_json_answer_so_a_replay_equals_the_first_plus_replayed() -> (
    None
):
    for cls in Written.registry.values():
        assert cls.__eq__ is Mapping.__eq__, f"{cls.__name__} needs eq=False"
    ident = uuid4()
    first = SampleWritten(sample_id=ident, balance=Decimal(1), position=3)
    assert replace(first, replayed=True) == {**first, "replayed": True}
    assert first["sample_id"] == str(ident)


def replayed(written: Written) -> Written:
    """What a replay of `written` gives back: its stored form through JSON, rebuilt."""
    return Written.rebuild(json.loads(json.dumps(written.stored())), position=9)


def test_a_completion_that_joined_a_shot_replays_with_its_null_timeline_frame_answered() -> None:
    task, shot, member = uuid4(), uuid4(), uuid4()
    first = TaskCompleted(
        result="generation",
        generation_id=uuid4(),
        shot_id=shot,
        shot_generation_id=member,
        cost=Decimal("0.25"),
        task_id=task,
        status="Complete",
        changed={str(task): "Complete"},
        position=4,
    )
    again = replayed(first)
    assert type(again) is TaskCompleted
    assert again.as_json() == {**first.as_json(), "position": 9, "replayed": True}
    assert again.as_json()["timeline_frame"] is None
    assert (
        list(again.as_json()).index("timeline_frame")
        == list(again.as_json()).index("shot_generation_id") + 1
    )
    assert again.cost == Decimal("0.25") and again.task_id == task


def test_a_round_that_claimed_nothing_and_a_progress_report_replay_as_themselves() -> None:
    nothing = replayed(NothingClaimed(position=3))
    assert type(nothing) is NothingClaimed and nothing.task_id is None

    task = uuid4()
    progress = ProgressReported(
        task_id=task, status="In Progress", changed={}, progress=(2, 8), position=5
    )
    again = replayed(progress)
    assert type(again) is ProgressReported
    assert again.progress == (2, 8)
    assert list(again.as_json())[-1] == "progress"  # after position, as before


# What every shape's stored results carry: a tag changed here is a replay that no longer
# rebuilds (idempotency rows live 24 h), so a renamed class keeps its old tag.
STORED_TAGS = {
    "ProjectWritten", "ShotWritten", "ShotMemberAdded", "ShotMemberMoved", "ShotsOrdered",
    "GenerationWritten", "VariantWritten", "VariantUpdated", "ResourceWritten",
    "ResourceDeleted", "UserWritten", "CreditsGranted", "CreditsToppedUp", "TokenIssued",
    "TokenRevoked", "TaskTypeWritten", "PendingCancelled", "TasksCreated", "TaskCreated",
    "RunStarted", "HeartbeatAnswered", "WorkerSwept", "WorkersSwept", "StatusesChanged",
    "TaskClaimed", "NothingClaimed", "TaskChanged", "ProgressReported", "TaskCompleted",
    "CompletedAndClaimed",
}  # fmt: skip


def test_every_shape_is_stored_under_the_tag_it_declares_and_the_tags_stay() -> None:
    domain_tags = {
        tag for tag, cls in Written.registry.items() if cls.__module__.startswith("domain.")
    }
    assert domain_tags == STORED_TAGS
    for tag, cls in Written.registry.items():
        assert tag == cls.STORED_AS


def test_a_tag_already_taken_or_none_at_all_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match=r"'ProjectWritten' of .*is already"):

        @dataclass(frozen=True, slots=True, kw_only=True, eq=False)
        class Impostor(Written):
            STORED_AS = "ProjectWritten"

            project_id: UUID

    with pytest.raises(TypeError, match="Untagged must declare STORED_AS"):

        @dataclass(frozen=True, slots=True, kw_only=True, eq=False)
        class Untagged(Written):
            project_id: UUID

    assert Written.registry["ProjectWritten"].__module__ == "domain.services.written"


def test_a_tag_no_shape_carries_is_answered_as_stored_never_matched_by_its_keys() -> None:
    project = str(uuid4())  # the keys of `ProjectWritten`, under a tag nobody carries
    again = Written.rebuild({TAG: "ShapeOfANewerRelease", "project_id": project}, position=5)
    assert type(again) is AsStored
    assert again.as_json() == {"project_id": project, "position": 5, "replayed": True}
    assert again["project_id"] == project and dict(again) == again.as_json()
    assert again.stored() == {"project_id": project, TAG: "ShapeOfANewerRelease"}
    untagged = Written.rebuild({"project_id": project}, position=5)
    assert type(untagged).__name__ == "ProjectWritten"
