"""The gallery and variants views follow the brief's generation rules."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from domain.generation import Generation
from domain.services.base import now
from projections.errors import InvalidCursorError
from projections.views.gallery import gallery_page, generation_row
from projections.views.lineage import children_of
from projections.views.variants import variants_of
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(120)


def ids(page: dict[str, Any]) -> list[str]:
    return [row["id"] for row in page["items"]]


def test_a_generation_shows_its_primary_variant_and_has_exactly_one_primary(
    app, database, schema, conn, project_id
):
    g = app.create_generation(
        project_id, None, "a.png", thumbnail_url="a.thumb.png", params={"prompt": "cat"}
    )["generation_id"]
    up = app.add_variant(
        g, None, "a.up.png", variant_type="upscaled", make_primary=True, params={"scale": 4}
    )["variant_id"]
    app.add_variant(g, None, "a.edit.png", variant_type="edit")
    catch_up(app, database, schema)

    row = generation_row(conn, g)
    assert (row["location"], row["primary_variant_id"], row["params"]) == (
        "a.up.png",
        up,
        {"scale": 4},
    )
    assert row["variant_count"] == 3
    variants = variants_of(conn, g)
    assert [v["is_primary"] for v in variants] == [False, True, False]


def test_deleting_the_primary_promotes_the_most_recent_remaining_variant(
    app, database, schema, conn, project_id
):
    g = app.create_generation(project_id, None, "b.png")["generation_id"]
    first = app.add_variant(g, None, "b1.png", variant_type="edit")["variant_id"]
    newest = app.add_variant(g, None, "b2.png", variant_type="edit")["variant_id"]
    app.make_variant_primary(g, None, first)
    app.delete_variant(g, None, first)
    catch_up(app, database, schema)

    assert generation_row(conn, g)["location"] == "b2.png"
    primaries = [v["id"] for v in variants_of(conn, g) if v["is_primary"]]
    assert primaries == [newest]
    assert first not in [v["id"] for v in variants_of(conn, g)]


def test_an_edited_variant_is_rewritten_in_the_variants_view_and_its_name_in_the_gallery(
    app, database, schema, conn, project_id
):
    made = app.create_generation(project_id, None, "e.png", name="upload")
    g, original = made["generation_id"], made["variant_id"]
    other = app.add_variant(g, None, "e2.png", variant_type="edit")["variant_id"]
    app.update_variant(g, None, original, viewed=False, starred=True, name="Hero")
    app.update_variant(g, None, other, starred=True)
    catch_up(app, database, schema)

    rows = {v["id"]: v for v in variants_of(conn, g)}
    assert (rows[original]["viewed"], rows[original]["starred"], rows[original]["name"]) == (
        False,
        True,
        "Hero",
    )
    assert (rows[other]["starred"], rows[other]["name"]) == (True, None)
    assert generation_row(conn, g)["name"] == "Hero"


def test_children_and_deleted_generations_are_hidden_from_the_gallery(
    app, database, schema, conn, project_id
):
    parent = app.create_generation(project_id, None, "v.mp4", media_type="video")
    kept = app.create_generation(project_id, None, "k.png")["generation_id"]
    gone = app.create_generation(project_id, None, "d.png")["generation_id"]
    child = Generation.start(
        app.project(project_id).id,
        "video",
        now(),
        parent_generation_id=app.generation(parent["generation_id"]).id,
        child_order=0,
    )
    child.add_variant(uuid4(), "seg0.mp4", now(), make_primary=True)
    app.save(child)
    app.delete_generation(gone, None)
    catch_up(app, database, schema)

    shown = ids(gallery_page(conn, project_id))
    assert kept in shown and parent["generation_id"] in shown
    assert gone not in shown and str(child.id) not in shown
    assert generation_row(conn, gone)["deleted"] is True
    assert [c["id"] for c in children_of(conn, parent["generation_id"])] == [str(child.id)]


def test_shot_data_lists_frames_sorted_with_nulls_last_and_drops_deleted_shots(
    app, database, schema, conn, project_id
):
    g = app.create_generation(project_id, None, "s.png")["generation_id"]
    shot = app.create_shot(project_id, None, "S")["shot_id"]
    other = app.create_shot(project_id, None, "T")["shot_id"]
    app.add_to_shot(shot, None, g, with_position=False)
    app.add_to_shot(shot, None, g, timeline_frame=100)
    app.add_to_shot(shot, None, g, timeline_frame=30)
    app.add_to_shot(other, None, g)
    catch_up(app, database, schema)
    assert generation_row(conn, g)["shot_data"] == {shot: [30, 100, None], other: [0]}

    app.delete_shot(other, None)
    catch_up(app, database, schema)
    assert generation_row(conn, g)["shot_data"] == {shot: [30, 100, None]}


def test_filters_select_starred_type_tool_and_shot_membership(
    app, database, schema, conn, project_id
):
    star = app.create_generation(project_id, None, "1.png")["generation_id"]
    video = app.create_generation(project_id, None, "2.mp4", media_type="video")["generation_id"]
    tool = app.create_generation(project_id, None, "3.png", params={"tool_type": "travel"})[
        "generation_id"
    ]
    loose = app.create_generation(project_id, None, "4.png")["generation_id"]
    shot = app.create_shot(project_id, None, "S")["shot_id"]
    app.star_generation(star, None, True)
    app.add_to_shot(shot, None, video)
    app.add_to_shot(shot, None, tool, with_position=False)
    catch_up(app, database, schema)

    assert ids(gallery_page(conn, project_id, starred=True)) == [star]
    assert ids(gallery_page(conn, project_id, media_type="video")) == [video]
    assert ids(gallery_page(conn, project_id, tool_type="travel")) == [tool]
    assert set(ids(gallery_page(conn, project_id, in_shot=shot))) == {video, tool}
    assert ids(gallery_page(conn, project_id, unpositioned_in_shot=shot)) == [tool]
    assert set(ids(gallery_page(conn, project_id, in_no_shot=True))) == {star, loose}


def test_keyset_pages_stay_stable_while_new_generations_arrive(
    app, database, schema, conn, project_id
):
    made = [app.create_generation(project_id, None, f"{i}.png")["generation_id"] for i in range(7)]
    catch_up(app, database, schema)
    first = gallery_page(conn, project_id, limit=3)
    assert ids(first) == made[::-1][:3]

    app.create_generation(project_id, None, "late.png")
    catch_up(app, database, schema)
    second = gallery_page(conn, project_id, limit=3, cursor=first["next_cursor"])
    third = gallery_page(conn, project_id, limit=3, cursor=second["next_cursor"])
    assert ids(second) + ids(third) == made[::-1][3:]
    assert third["next_cursor"] is None


def test_a_forged_cursor_is_refused(conn, project_id):
    with pytest.raises(InvalidCursorError):
        gallery_page(conn, project_id, cursor="bm90LWEtY3Vyc29y")


def test_the_bin_lists_deleted_generations_and_a_restore_takes_them_out(
    app, database, schema, conn, project_id
):
    from projections.views.projects import project_row, projects_of

    a = app.create_generation(project_id, None, "a.png")["generation_id"]
    b = app.create_generation(project_id, None, "b.png")["generation_id"]
    app.delete_generation(a, None)
    catch_up(app, database, schema)
    assert ids(gallery_page(conn, project_id, deleted=True)) == [a]
    assert ids(gallery_page(conn, project_id)) == [b]
    app.restore_generation(a, None)
    owner = project_row(conn, project_id)["owner_id"]
    app.delete_project(project_id, owner)
    catch_up(app, database, schema)
    assert ids(gallery_page(conn, project_id, deleted=True)) == []
    assert ids(gallery_page(conn, project_id)) == [b, a]
    assert [p["id"] for p in projects_of(conn, owner, deleted=True)] == [project_id]
    assert projects_of(conn, owner) == []
    app.restore_project(project_id, owner)
    catch_up(app, database, schema)
    assert projects_of(conn, owner, deleted=True) == []
    assert [p["id"] for p in projects_of(conn, owner)] == [project_id]
