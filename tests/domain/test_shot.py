from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import (
    DeletedError,
    EmptyNameError,
    NegativeFrameError,
    ShotOrderError,
)
from domain.shot import Shot, spacing_gap


def new_shot() -> Shot:
    return Shot.start(uuid4(), "Opening", 0)


def frames(shot: Shot) -> list[int | None]:
    return [m.timeline_frame for m in shot.ordered_members()]


def test_the_first_positioned_member_lands_on_frame_zero() -> None:
    shot = new_shot()
    shot.add(uuid4(), uuid4(), "image")
    assert frames(shot) == [0]


def test_each_further_positioned_member_lands_fifty_after_the_last() -> None:
    shot = new_shot()
    for _ in range(3):
        shot.add(uuid4(), uuid4(), "image")
    assert frames(shot) == [0, 50, 100]


def test_adding_without_a_position_leaves_the_frame_empty() -> None:
    shot = new_shot()
    shot.add(uuid4(), uuid4(), "image", with_position=False)
    assert frames(shot) == [None]


def test_a_generation_may_appear_twice_in_one_shot() -> None:
    shot, g = new_shot(), uuid4()
    shot.add(uuid4(), g, "image")
    shot.add(uuid4(), g, "image")
    assert [m.generation_id for m in shot.members] == [g, g]


def test_reordering_assigns_frames_fifty_apart_in_the_given_order() -> None:
    shot = new_shot()
    a, b, c = uuid4(), uuid4(), uuid4()
    for g in (a, b, c):
        shot.add(uuid4(), g, "image")
    shot.reorder([c, a, b])
    assert [(m.generation_id, m.timeline_frame) for m in shot.ordered_members()] == [
        (c, 0),
        (a, 50),
        (b, 100),
    ]


def test_reordering_with_an_unknown_generation_is_refused_and_changes_nothing() -> None:
    shot = new_shot()
    shot.add(uuid4(), uuid4(), "image")
    shot.collect_events()
    with pytest.raises(ShotOrderError):
        shot.reorder([uuid4()])
    assert shot.collect_events() == []


def test_removing_a_membership_removes_only_that_one() -> None:
    shot, g = new_shot(), uuid4()
    first = shot.add(uuid4(), g, "image")
    shot.add(uuid4(), g, "image")
    shot.remove(first.id)
    assert [m.timeline_frame for m in shot.members] == [50]


def test_unpositioning_clears_the_frame() -> None:
    shot = new_shot()
    member = shot.add(uuid4(), uuid4(), "image")
    shot.unposition(member.id)
    assert frames(shot) == [None]


def test_a_negative_frame_is_refused() -> None:
    shot = new_shot()
    member = shot.add(uuid4(), uuid4(), "image")
    with pytest.raises(NegativeFrameError):
        shot.move(member.id, -5)
    with pytest.raises(NegativeFrameError):
        shot.add(uuid4(), uuid4(), "image", frame=-1)


def test_fixing_spacing_respaces_positioned_images_fifty_apart() -> None:
    shot = new_shot()
    for frame in (90, 3):
        shot.add(uuid4(), uuid4(), "image", frame=frame)
    shot.fix_spacing()
    assert frames(shot) == [0, 50]


def test_fixing_spacing_tightens_the_gap_so_many_images_fit_eighty_one_frames() -> None:
    shot = new_shot()
    for i in range(5):
        shot.add(uuid4(), uuid4(), "image", frame=i * 10)
    shot.fix_spacing()
    # (5-1)*50 = 200 > 81-5 = 76 → gap = 76 // 4 = 19
    assert frames(shot) == [0, 19, 38, 57, 76]
    assert spacing_gap(2) == 50
    assert spacing_gap(80) == 1


def test_fixing_spacing_leaves_videos_and_unpositioned_members_alone() -> None:
    shot = new_shot()
    shot.add(uuid4(), uuid4(), "image", frame=10)
    shot.add(uuid4(), uuid4(), "video", frame=400)
    shot.add(uuid4(), uuid4(), "image", with_position=False)
    shot.fix_spacing()
    by_type = sorted(
        (m.media_type, -1 if m.timeline_frame is None else m.timeline_frame) for m in shot.members
    )
    assert by_type == [("image", -1), ("image", 0), ("video", 400)]


def test_members_with_equal_frames_keep_the_order_they_were_added() -> None:
    shot = new_shot()
    a = shot.add(uuid4(), uuid4(), "image", frame=10)
    b = shot.add(uuid4(), uuid4(), "image", frame=10)
    assert [m.id for m in shot.ordered_members()] == [a.id, b.id]


def test_the_unpositioned_count_excludes_videos() -> None:
    shot = new_shot()
    shot.add(uuid4(), uuid4(), "image", with_position=False)
    shot.add(uuid4(), uuid4(), "video", with_position=False)
    shot.add(uuid4(), uuid4(), "image")
    assert shot.unpositioned_count == 1


def test_a_duplicate_copies_only_positioned_images() -> None:
    shot = new_shot()
    kept = shot.add(uuid4(), uuid4(), "image", frame=30, metadata={"note": "x"})
    shot.add(uuid4(), uuid4(), "video", frame=60)
    shot.add(uuid4(), uuid4(), "image", with_position=False)
    assert [(m.generation_id, m.timeline_frame, m.metadata) for m in shot.copyable_members()] == [
        (kept.generation_id, 30, {"note": "x"})
    ]


def test_a_deleted_shot_refuses_changes_until_restored() -> None:
    shot = new_shot()
    member = shot.add(uuid4(), uuid4(), "image")
    shot.delete()
    with pytest.raises(DeletedError):
        shot.add(uuid4(), uuid4(), "image")
    shot.restore()
    assert [m.id for m in shot.members] == [member.id]


def test_a_shot_needs_a_name() -> None:
    with pytest.raises(EmptyNameError):
        Shot.start(uuid4(), "   ", 0)


def test_every_shot_event_has_a_fixed_topic() -> None:
    shot = new_shot()
    member = shot.add(uuid4(), uuid4(), "image")
    shot.unposition(member.id)
    shot.delete()
    topics = [type(e).TOPIC for e in shot.collect_events()]  # type: ignore[attr-defined]
    assert topics == [
        "darkroom.shot.created",
        "darkroom.shot.member_added",
        "darkroom.shot.frames_set",
        "darkroom.shot.deleted",
    ]
