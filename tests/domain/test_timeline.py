"""Timeline verbs of the studio: a member moved by generation or membership id, a
project's shots reordered (positions 0..n-1, every live shot exactly once)."""

from __future__ import annotations

import uuid

import pytest

from domain.errors import (
    DeletedError,
    MembershipNotFoundError,
    NegativeFrameError,
    ShotNotFoundError,
    ShotOrderError,
)
from domain.studio import Studio


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_a_member_is_moved_by_generation_or_membership_and_taken_off(studio: Studio) -> None:
    owner = user()
    project = studio.create_project(owner, "Film").project_id
    shot = studio.create_shot(project, owner, "S").shot_id
    gen = studio.create_generation(project, owner, "/m/a.png").generation_id
    first = studio.add_to_shot(shot, owner, gen).shot_generation_id
    second = studio.add_to_shot(shot, owner, gen).shot_generation_id
    moved = studio.place_in_shot(shot, owner, second, 10, membership_only=True)
    assert moved.shot_generation_id == second
    assert studio.place_in_shot(shot, owner, gen, 30).shot_generation_id == first
    studio.place_in_shot(shot, owner, gen, None)  # the earliest now is `second` at 10
    members = {m.id: m.timeline_frame for m in studio.shot(shot).members}
    assert members == {first: 30, second: None}
    with pytest.raises(MembershipNotFoundError):
        studio.place_in_shot(shot, owner, gen, 5, membership_only=True)
    with pytest.raises(NegativeFrameError):
        studio.place_in_shot(shot, owner, first, -5)
    with pytest.raises(ShotNotFoundError):
        studio.place_in_shot(shot, user(), first, 5)  # another user's shot: not found


def test_a_projects_shots_are_reordered_and_new_ones_go_last(studio: Studio) -> None:
    owner = user()
    project = studio.create_project(owner, "Film").project_id
    a, b, c = (studio.create_shot(project, owner, n).shot_id for n in "ABC")
    studio.order_shots(project, owner, [c, a, b])
    assert [studio.shot(s).position for s in (c, a, b)] == [0, 1, 2]
    d = studio.create_shot(project, owner, "D").shot_id
    assert studio.shot(d).position == 3
    with pytest.raises(ShotOrderError):
        studio.order_shots(project, owner, [c, a, b])
    studio.delete_shot(b, owner)
    with pytest.raises(DeletedError):
        studio.shot(b).place(0)
    result = studio.order_shots(project, owner, [d, c, a])
    assert result.shot_ids == (d, c, a)
    assert [studio.shot(s).position for s in (d, c, a)] == [0, 1, 2]
    with pytest.raises(ShotOrderError):
        studio.order_shots(project, owner, [d, c, a, b])
