"""The service layer against a real PostgreSQL event store."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from darkroom.database import Database
from domain.errors import (
    ConcurrencyConflictError,
    EmptyNameError,
    GenerationNotFoundError,
    IdempotencyKeyInFlightError,
    MembershipNotFoundError,
    NegativeFrameError,
    OriginalVariantDeletionError,
    ProjectNotFoundError,
    ShotNotFoundError,
    ValidationError,
)
from domain.metadata import CommandMeta
from domain.services import base
from domain.studio import Studio


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def project_of(studio: Studio, owner: str) -> str:
    return str(studio.create_project(owner, "Film")["project_id"])


def image(studio: Studio, project_id: str, owner: str, **kw: object) -> str:
    return str(
        studio.create_generation(project_id, owner, f"/media/{uuid.uuid4()}.png", **kw)[
            "generation_id"
        ]
    )  # type: ignore[arg-type]


def test_every_command_returns_the_global_position_it_wrote(studio: Studio) -> None:
    owner = user()
    first = studio.create_project(owner, "One").position
    second = studio.create_project(owner, "Two").position
    assert second > first and studio.head_position() >= second


def test_a_command_sent_twice_with_one_idempotency_key_stores_nothing_new(studio: Studio) -> None:
    owner = user()
    meta = CommandMeta.for_user(owner, idempotency_key="create-film")
    first = studio.create_project(owner, "Film", meta=meta)
    head = studio.head_position()
    again = studio.create_project(
        owner, "Film", meta=CommandMeta.for_user(owner, idempotency_key="create-film")
    )
    assert again.project_id == first.project_id and again.replayed
    assert studio.head_position() == head


def test_concurrent_commands_with_one_key_create_one_result(studio: Studio) -> None:
    """In flight in this process: refused (409 at the edge); done: replayed."""
    owner, results, refused = user(), [], []

    def send() -> None:
        meta = CommandMeta.for_user(owner, idempotency_key="race")
        try:
            results.append(studio.create_project(owner, "Raced", meta=meta).project_id)
        except IdempotencyKeyInFlightError:
            refused.append(True)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) + len(refused) == 6 and len(set(results)) == 1
    again = studio.create_project(
        owner, "Raced", meta=CommandMeta.for_user(owner, idempotency_key="race")
    )
    assert again.replayed and again.project_id == results[0]


def test_every_stored_event_carries_actor_correlation_causation_and_command(studio: Studio) -> None:
    owner = user()
    meta = CommandMeta.for_user(owner, correlation_id="corr-1", causation_id="cause-1")
    project_id = studio.create_project(owner, "Film", meta=meta).project_id
    studio.create_shot(project_id, owner, "A", meta=meta.caused())
    history = studio.history(project_id)
    assert [h["actor"] for h in history] == [f"user:{owner}"] * 2
    assert {h["correlation_id"] for h in history} == {"corr-1"}
    assert history[0]["causation_id"] == "cause-1"
    assert history[1]["causation_id"] == meta.command_id
    assert all(h["command_id"] for h in history)


def test_creating_a_shot_with_an_image_saves_both_atomically(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    generation_id = image(studio, project_id, owner)
    result = studio.create_shot(project_id, owner, "Hero", generation_id=generation_id)
    shot = studio.shot(result.shot_id)
    assert [(m.generation_id, m.timeline_frame) for m in shot.members] == [
        (uuid.UUID(generation_id), 0)
    ]
    assert studio.project(project_id).shots_placed == 1


def test_a_failing_part_of_a_multi_aggregate_command_stores_nothing(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    head = studio.head_position()
    with pytest.raises(GenerationNotFoundError):
        studio.create_shot(project_id, owner, "Hero", generation_id=uuid.uuid4())
    assert studio.head_position() == head
    assert studio.project(project_id).shots_placed == 0


def test_shots_are_placed_after_the_last_and_a_duplicate_goes_last(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    a = studio.create_shot(project_id, owner, "A").shot_id
    studio.create_shot(project_id, owner, "B")
    gen = image(studio, project_id, owner)
    video = studio.create_generation(project_id, owner, "/media/v.mp4", "video")
    studio.add_to_shot(a, owner, gen)
    studio.add_to_shot(a, owner, video.generation_id)
    studio.add_to_shot(a, owner, gen, with_position=False)
    copy = studio.shot(studio.duplicate_shot(a, owner).shot_id)
    assert (copy.name, copy.position) == ("A (copy)", 2)
    assert [(str(m.generation_id), m.timeline_frame) for m in copy.members] == [(gen, 0)]


def test_deleting_a_shot_is_soft_and_restore_brings_back_its_memberships(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    gen = image(studio, project_id, owner)
    shot_id = studio.create_shot(project_id, owner, "A", generation_id=gen).shot_id
    studio.delete_shot(shot_id, owner)
    assert studio.shot(shot_id).deleted
    studio.restore_shot(shot_id, owner)
    assert [str(m.generation_id) for m in studio.shot(shot_id).members] == [gen]


def test_deleting_a_parent_generation_deletes_its_children(studio: Studio) -> None:
    from domain.generation import Generation

    owner = user()
    project_id = uuid.UUID(project_of(studio, owner))
    parent = Generation.start(project_id, "video", datetime.now(UTC))
    child = Generation.start(
        project_id, "video", datetime.now(UTC), parent_generation_id=parent.id, child_order=0
    )
    parent.add_child(child.id, 0)
    studio.save(parent, child)
    studio.delete_generation(parent.id, owner)
    assert studio.generation(child.id).deleted


def test_restoring_a_parent_generation_restores_its_children(studio: Studio) -> None:
    from domain.errors import GenerationNotFoundError, ProjectNotFoundError, ValidationError
    from domain.generation import Generation

    owner = user()
    project_id = uuid.UUID(project_of(studio, owner))
    parent = Generation.start(project_id, "video", datetime.now(UTC))
    children = [
        Generation.start(
            project_id, "video", datetime.now(UTC), parent_generation_id=parent.id, child_order=i
        )
        for i in range(2)
    ]
    for i, child in enumerate(children):
        parent.add_child(child.id, i)
    studio.save(parent, *children)
    studio.delete_generation(parent.id, owner)
    with pytest.raises(ValidationError):  # a child comes back only with its parent
        studio.restore_generation(children[0].id, owner)
    with pytest.raises(GenerationNotFoundError):
        studio.restore_generation(parent.id, "someone-else")
    studio.restore_generation(parent.id, owner)
    assert not any(studio.generation(g.id).deleted for g in [parent, *children])
    with pytest.raises(ValidationError):  # not deleted
        studio.restore_generation(parent.id, owner)
    studio.delete_generation(parent.id, owner)
    studio.delete_project(project_id, owner)
    with pytest.raises(ProjectNotFoundError):  # nothing comes back into a deleted project
        studio.restore_generation(parent.id, owner)
    studio.restore_project(project_id, owner)
    studio.restore_generation(parent.id, owner)
    assert not studio.generation(children[1].id).deleted


@pytest.mark.parametrize(
    "attempt",
    [
        lambda s, o, p: s.create_project(o, "   "),
        lambda s, o, p: s.create_shot(p, o, ""),
        lambda s, o, p: s.create_shot(uuid.uuid4(), o, "A"),
        lambda s, o, p: s.create_shot(p, "someone-else", "A"),
        lambda s, o, p: s.create_generation(p, o, "", "image"),
        lambda s, o, p: s.create_generation(p, o, "/m/x.gif", "gif"),
        lambda s, o, p: s.star_generation(uuid.uuid4(), o, True),
        lambda s, o, p: s.reorder_shot(uuid.uuid4(), o, []),
        lambda s, o, p: s.create_project(o, "Film", aspect_ratio="7:5"),
        lambda s, o, p: s.reorder_shot("not-a-uuid", o, []),
    ],
    ids=[
        "empty project name",
        "empty shot name",
        "unknown project",
        "wrong owner",
        "empty location",
        "unknown media type",
        "unknown generation",
        "unknown shot",
        "bad aspect ratio",
        "malformed id",
    ],
)
def test_bad_input_raises_a_named_domain_error_and_stores_nothing(
    studio: Studio, attempt: object
) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    head = studio.head_position()
    with pytest.raises(
        (
            ValidationError,
            ProjectNotFoundError,
            GenerationNotFoundError,
            ShotNotFoundError,
            EmptyNameError,
        )
    ):
        attempt(studio, owner, project_id)  # type: ignore[operator]
    assert studio.head_position() == head


def test_deleting_an_original_variant_and_negative_frames_store_nothing(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    made = studio.create_generation(project_id, owner, "/media/o.png")
    shot = studio.create_shot(project_id, owner, "A", generation_id=made.generation_id)
    head = studio.head_position()
    with pytest.raises(OriginalVariantDeletionError):
        studio.delete_variant(made.generation_id, owner, made.variant_id)
    with pytest.raises(NegativeFrameError):
        studio.move_in_shot(shot.shot_id, owner, shot.shot_generation_id, -10)
    with pytest.raises(MembershipNotFoundError):
        studio.remove_from_shot(shot.shot_id, owner, uuid.uuid4())
    assert studio.head_position() == head


def test_another_users_generation_is_not_found_for_them(studio: Studio) -> None:
    owner = user()
    gen = image(studio, project_of(studio, owner), owner)
    with pytest.raises(GenerationNotFoundError):
        studio.star_generation(gen, "mallory", True)
    assert not studio.generation(gen).starred


def test_a_conflict_that_never_resolves_surfaces_as_a_conflict_error(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    monkeypatch.setattr(base, "MAX_ATTEMPTS", 3)
    real_get = studio.repository.get
    calls = []

    def stale_get(ident: object, **kw: object) -> object:
        calls.append(ident)
        return real_get(ident, version=1)  # always the first version: every save conflicts

    monkeypatch.setattr(studio.repository, "get", stale_get)
    studio_project = real_get(uuid.UUID(project_id))
    assert studio_project.version == 1
    studio.update_project(project_id, owner, name="Renamed")  # version 1 → 2 succeeds
    with pytest.raises(ConcurrencyConflictError):
        studio.update_project(project_id, owner, name="Again")
    assert len(calls) >= 3


def test_concurrent_edits_of_one_shot_are_retried_and_all_land(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    shot_id = studio.create_shot(project_id, owner, "A").shot_id
    gens = [image(studio, project_id, owner) for _ in range(8)]
    threads = [threading.Thread(target=studio.add_to_shot, args=(shot_id, owner, g)) for g in gens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shot = studio.shot(shot_id)
    assert sorted(str(m.generation_id) for m in shot.members) == sorted(gens)
    assert sorted(m.timeline_frame for m in shot.members) == [i * 50 for i in range(8)]


def test_an_aggregate_can_be_read_as_of_a_version_or_a_moment(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    studio.update_project(project_id, owner, name="Second")
    moment = datetime.now(UTC)
    studio.update_project(project_id, owner, name="Third")
    assert studio.aggregate_at(project_id, version=1).name == "Film"
    assert studio.aggregate_at(project_id, at=moment).name == "Second"
    assert studio.aggregate_at(project_id).name == "Third"


def test_a_projects_whole_state_can_be_read_as_of_a_past_position(studio: Studio) -> None:
    owner = user()
    project_id = project_of(studio, owner)
    gen = image(studio, project_id, owner)
    before = studio.head_position()
    studio.star_generation(gen, owner, True)
    image(studio, project_id, owner)
    past = studio.project_as_of(project_id, before)
    assert len(past) == 2 and not past[uuid.UUID(gen)].starred


def test_new_users_get_their_welcome_credits_once(studio: Studio) -> None:
    owner = user()
    studio.ensure_user(owner)
    studio.ensure_user(owner)
    assert studio.ledger(owner).balance == studio.welcome_credits


def test_a_top_up_adds_bought_credits_once_per_payment_reference(studio: Studio) -> None:
    owner = user()
    first = studio.top_up_credits(owner, "4.5", "pay-1")
    assert first["added"] is True
    assert studio.ledger(owner).balance == studio.welcome_credits + Decimal("4.5")
    before = studio.head_position()
    replayed = studio.top_up_credits(owner, "4.5", "pay-1")
    assert replayed["added"] is False and studio.head_position() == before
    assert studio.ledger(owner).balance == studio.welcome_credits + Decimal("4.5")
    with pytest.raises(ValidationError):
        studio.top_up_credits(owner, "1", " ")


def test_personal_access_tokens_are_stored_only_as_digests(
    studio: Studio, database: Database, schema: str
) -> None:
    owner = user()
    issued = studio.issue_token(owner, "laptop")
    assert studio.user_for_token(issued.token) == owner
    with psycopg.connect(database.conninfo) as conn:
        found = conn.execute(
            f'SELECT count(*) FROM "{schema}".darkroom_events '
            "WHERE position(%s::bytea in state) > 0",
            (issued.token.encode(),),
        ).fetchone()
    assert found == (0,)
    studio.revoke_token(owner, issued.token_id)
    assert studio.user_for_token(issued.token) is None


def test_starring_and_renaming_together_is_one_save_under_one_key(studio: Studio) -> None:
    project = studio.create_project("alice", "Patch").project_id
    ident = uuid.UUID(studio.create_generation(project, "alice", "file:///p.png")["generation_id"])
    meta = CommandMeta.for_user("alice", idempotency_key=f"patch-{ident}")
    first = studio.update_generation(ident, "alice", starred=True, name="both", meta=meta)
    version = studio.repository.get(ident).version
    again = studio.update_generation(ident, "alice", starred=True, name="both", meta=meta)
    assert again == {**first, "replayed": True}
    assert studio.repository.get(ident).version == version
    kinds = [type(e).__name__ for e in studio.events.get(ident)][-2:]
    assert kinds == ["Starred", "Renamed"]
