"""The shots view: position order, ordered members with media, unpositioned counts."""

from __future__ import annotations

import pytest

from projections.views.shots import shot_row, shots_of_project
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(120)


def test_shots_come_in_position_order_with_members_in_timeline_order(
    app, database, schema, conn, project_id
):
    a = app.create_generation(project_id, None, "a.png", thumbnail_url="a.t.png")
    b = app.create_generation(project_id, None, "b.png")
    first = app.create_shot(project_id, None, "first")["shot_id"]
    second = app.create_shot(project_id, None, "second")["shot_id"]
    app.add_to_shot(first, None, a["generation_id"])
    app.add_to_shot(first, None, b["generation_id"])
    app.add_to_shot(first, None, a["generation_id"], with_position=False)
    app.reorder_shot(first, None, [b["generation_id"], a["generation_id"]])
    catch_up(app, database, schema)

    shots = shots_of_project(conn, project_id)
    assert [s["id"] for s in shots] == [first, second]
    members = shots[0]["members"]
    assert [(m["generation_id"], m["timeline_frame"], m["position"]) for m in members] == [
        (b["generation_id"], 0, 0),
        (a["generation_id"], 50, 1),
        (a["generation_id"], None, None),
    ]
    assert members[1]["location"] == "a.png" and members[1]["thumbnail_url"] == "a.t.png"


def test_a_member_shows_the_primary_variant_of_its_generation(
    app, database, schema, conn, project_id
):
    g = app.create_generation(project_id, None, "g.png")["generation_id"]
    shot = app.create_shot(project_id, None, "S", generation_id=g)["shot_id"]
    catch_up(app, database, schema)
    app.add_variant(g, None, "g.up.png", variant_type="upscaled", make_primary=True)
    catch_up(app, database, schema)
    assert shot_row(conn, shot)["members"][0]["location"] == "g.up.png"


def test_the_unpositioned_count_leaves_videos_out(app, database, schema, conn, project_id):
    image = app.create_generation(project_id, None, "i.png")["generation_id"]
    video = app.create_generation(project_id, None, "v.mp4", media_type="video")["generation_id"]
    shot = app.create_shot(project_id, None, "S")["shot_id"]
    app.add_to_shot(shot, None, image, with_position=False)
    app.add_to_shot(shot, None, video, with_position=False)
    catch_up(app, database, schema)
    assert shot_row(conn, shot)["unpositioned_count"] == 1


def test_deleted_shots_are_hidden_and_come_back_when_restored(
    app, database, schema, conn, project_id
):
    shot = app.create_shot(project_id, None, "S")["shot_id"]
    app.delete_shot(shot, None)
    catch_up(app, database, schema)
    assert shots_of_project(conn, project_id) == []
    app.restore_shot(shot, None)
    catch_up(app, database, schema)
    assert [s["id"] for s in shots_of_project(conn, project_id)] == [shot]


def test_a_deleted_generation_leaves_its_shots_and_comes_back_when_restored(
    app, database, schema, conn, project_id
):
    a = app.create_generation(project_id, None, "a.png")["generation_id"]
    b = app.create_generation(project_id, None, "b.png")["generation_id"]
    shot = app.create_shot(project_id, None, "S", generation_id=a)["shot_id"]
    app.add_to_shot(shot, None, b)
    app.add_to_shot(shot, None, b, with_position=False)
    catch_up(app, database, schema)
    app.delete_generation(b, None)
    catch_up(app, database, schema)
    row = shot_row(conn, shot)
    assert [m["generation_id"] for m in row["members"]] == [a]
    assert (row["member_count"], row["unpositioned_count"]) == (1, 0)
    app.restore_generation(b, None)
    catch_up(app, database, schema)
    row = shot_row(conn, shot)
    assert [(m["generation_id"], m["position"]) for m in row["members"]] == [
        (a, 0),
        (b, 1),
        (b, None),
    ]
    assert (row["member_count"], row["unpositioned_count"]) == (3, 1)
