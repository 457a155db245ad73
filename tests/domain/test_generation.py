from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.errors import (
    DeletedError,
    OriginalVariantDeletionError,
    ValidationError,
    VariantNotFoundError,
)
from domain.generation import Generation

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def with_original() -> tuple[Generation, UUID]:
    generation = Generation.start(uuid4(), "image", T0)
    original = generation.add_variant(uuid4(), "/media/a.png", at(0), thumbnail_url="/t/a.png")
    return generation, original.id


def test_the_first_variant_becomes_primary_whatever_was_asked() -> None:
    generation, original = with_original()
    assert generation.primary_variant_id == original


def test_a_generation_shows_its_primary_variants_media() -> None:
    generation, _ = with_original()
    generation.add_variant(
        uuid4(),
        "/media/b.png",
        at(1),
        variant_type="upscaled",
        thumbnail_url="/t/b.png",
        params={"scale": 4},
        name="big",
        make_primary=True,
    )
    assert (
        generation.location,
        generation.thumbnail_url,
        generation.display_params,
        generation.display_name,
    ) == ("/media/b.png", "/t/b.png", {"scale": 4}, "big")


def test_making_a_variant_primary_demotes_the_other() -> None:
    generation, original = with_original()
    edit = generation.add_variant(uuid4(), "/media/b.png", at(1), variant_type="edit")
    assert generation.primary_variant_id == original
    generation.make_primary(edit.id)
    assert generation.primary_variant_id == edit.id
    assert sum(v.id == generation.primary_variant_id for v in generation.variants.values()) == 1


def test_the_original_variant_cannot_be_deleted() -> None:
    generation, original = with_original()
    generation.collect_events()
    with pytest.raises(OriginalVariantDeletionError, match=str(original)):
        generation.delete_variant(original)
    assert generation.collect_events() == []


def test_deleting_the_primary_variant_promotes_the_newest_remaining() -> None:
    generation, _ = with_original()
    newer = generation.add_variant(uuid4(), "/media/n.png", at(5), variant_type="edit")
    primary = generation.add_variant(
        uuid4(), "/media/p.png", at(3), variant_type="upscaled", make_primary=True
    )
    generation.delete_variant(primary.id)
    assert generation.primary_variant_id == newer.id


def test_deleting_the_last_variant_leaves_no_media() -> None:
    generation = Generation.start(uuid4(), "video", T0)
    only = generation.add_variant(uuid4(), "/media/v.mp4", at(1), variant_type="travel_stitch")
    generation.delete_variant(only.id)
    assert (generation.primary_variant_id, generation.location) == (None, None)


def test_deleting_a_variant_that_is_not_there_is_refused() -> None:
    generation, _ = with_original()
    with pytest.raises(VariantNotFoundError):
        generation.delete_variant(uuid4())


def test_an_empty_location_is_refused() -> None:
    generation, _ = with_original()
    with pytest.raises(ValidationError):
        generation.add_variant(uuid4(), "  ", at(2))


def test_a_generation_is_an_image_or_a_video() -> None:
    with pytest.raises(ValidationError):
        Generation.start(uuid4(), "gif", T0)


def test_a_deleted_generation_refuses_new_variants() -> None:
    generation, _ = with_original()
    generation.delete()
    with pytest.raises(DeletedError):
        generation.add_variant(uuid4(), "/media/x.png", at(3))


def test_starring_twice_records_one_event() -> None:
    generation, _ = with_original()
    generation.collect_events()
    generation.star(True)
    generation.star(True)
    assert [type(e) for e in generation.collect_events()] == [Generation.Starred]


def test_a_child_knows_its_parent_and_order() -> None:
    parent = Generation.start(uuid4(), "video", T0)
    child = Generation.start(
        parent.project_id, "video", T0, parent_generation_id=parent.id, child_order=1
    )
    parent.add_child(child.id, 1)
    assert child.is_child and parent.children == {1: child.id}


def test_renaming_to_the_name_it_has_records_nothing() -> None:
    generation, _ = with_original()
    generation.rename("  dusk ")
    generation.collect_events()
    generation.rename("dusk")
    assert generation.collect_events() == []
    assert generation.name == "dusk"


def test_editing_a_variant_sets_viewed_starred_and_name_and_keeps_what_was_not_given() -> None:
    generation, _ = with_original()
    edit = generation.add_variant(uuid4(), "/media/b.png", at(1), variant_type="edit", name="first")
    generation.collect_events()
    generation.edit_variant(edit.id, viewed=True)
    generation.edit_variant(edit.id, starred=True, name="  second ")
    edited = generation.variant(edit.id)
    assert (edited.viewed, edited.starred, edited.name) == (True, True, "second")
    assert [type(e) for e in generation.collect_events()] == [Generation.VariantEdited] * 2
    generation.edit_variant(edit.id, viewed=False, name=None)
    edited = generation.variant(edit.id)
    assert (edited.viewed, edited.starred, edited.name) == (False, True, None)


def test_editing_a_variant_to_what_it_already_is_records_nothing() -> None:
    generation, original = with_original()
    generation.edit_variant(original, viewed=True, starred=True, name="x")
    generation.collect_events()
    generation.edit_variant(original, viewed=True, starred=True, name=" x ")
    generation.edit_variant(original)
    assert generation.collect_events() == []


def test_renaming_the_primary_variant_renames_what_the_generation_shows() -> None:
    generation, original = with_original()
    generation.edit_variant(original, name="hero")
    assert generation.display_name == "hero"


def test_editing_a_variant_refuses_bad_values_and_unknown_or_deleted_things() -> None:
    generation, original = with_original()
    with pytest.raises(ValidationError, match="'yes'"):
        generation.edit_variant(original, starred="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="501"):
        generation.edit_variant(original, name="n" * 501)
    with pytest.raises(VariantNotFoundError):
        generation.edit_variant(uuid4(), viewed=True)
    generation.delete()
    with pytest.raises(DeletedError):
        generation.edit_variant(original, viewed=True)
