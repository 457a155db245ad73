"""Projects, shots, generations and variants over HTTP: commands write, views answer."""

from __future__ import annotations

from typing import Any

import httpx

from tests.realtime.api_harness import Server, error_of, ok, position, server

__all__ = ["server"]


def project(client: httpx.Client, name: str = "Film", **kw: Any) -> str:
    return str(ok(client.post("/api/projects", json={"name": name, **kw}), 201)["id"])


def image(client: httpx.Client, project_id: str, **kw: Any) -> dict[str, Any]:
    return ok(
        client.post(
            "/api/generations",
            json={  # type: ignore[no-any-return]
                "project_id": project_id,
                "location": "/media/a.png",
                **kw,
            },
        ),
        201,
    )


def get(client: httpx.Client, path: str, written: httpx.Response | int) -> Any:
    at = written if isinstance(written, int) else position(written)
    sep = "&" if "?" in path else "?"
    return ok(client.get(f"{path}{sep}min_position={at}"))


# -- projects ------------------------------------------------------------------------
def test_a_first_listing_creates_the_default_project_once(server: Server) -> None:
    alice = server.user()
    first = alice.get("/api/projects")
    listed = ok(first)
    assert [p["name"] for p in listed] == ["Default Project"]
    assert "X-Darkroom-Position" in first.headers
    assert ok(alice.get("/api/projects")) == listed


def test_projects_are_created_read_updated_and_soft_deleted(server: Server) -> None:
    alice = server.user()
    created = alice.post(
        "/api/projects", json={"name": "Film", "aspect_ratio": "1:1", "settings": {"fps": 24}}
    )
    body = ok(created, 201)
    assert body["name"] == "Film" and body["position"] == position(created)
    pid = body["id"]
    assert get(alice, f"/api/projects/{pid}", created)["settings"] == {"fps": 24}
    renamed = alice.put(f"/api/projects/{pid}", json={"name": "Film II"})
    assert get(alice, f"/api/projects/{pid}", renamed)["name"] == "Film II"
    deleted = alice.delete(f"/api/projects/{pid}")
    ok(deleted)
    assert pid not in {p["id"] for p in get(alice, "/api/projects", deleted)}
    error_of(alice.get(f"/api/projects/{pid}"), 404)
    error_of(alice.put(f"/api/projects/{pid}", json={"name": "Ghost"}), 404)


# -- shots ---------------------------------------------------------------------------
def test_shots_list_in_position_order_with_ordered_images(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    first = ok(alice.post("/api/shots", json={"project_id": pid, "name": "One"}), 201)
    second = ok(alice.post("/api/shots", json={"project_id": pid, "name": "Two"}), 201)
    a, b = image(alice, pid), image(alice, pid, type="image")
    ok(
        alice.post(
            "/api/shots/shot_generations", json={"shot_id": first["id"], "generation_id": a["id"]}
        ),
        201,
    )
    last = alice.post(
        "/api/shots/shot_generations",
        json={"shot_id": first["id"], "generation_id": b["id"], "with_position": False},
    )
    shots = get(alice, f"/api/shots?projectId={pid}", last)
    assert [s["name"] for s in shots] == ["One", "Two"]
    images = shots[0]["images"]
    assert [(i["generation_id"], i["timeline_frame"]) for i in images] == [
        (a["id"], 0),
        (b["id"], None),
    ]
    assert shots[0]["unpositioned_count"] == 1 and shots[1]["images"] == []
    assert set(images[0]) >= {
        "shot_generation_id",
        "generation_id",
        "timeline_frame",
        "position",
        "location",
        "thumbnail_url",
        "type",
    }
    assert second["id"] != first["id"]


def test_a_shot_created_with_an_image_has_it_at_frame_zero(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    g = image(alice, pid)
    made = alice.post("/api/shots", json={"project_id": pid, "name": "S", "generation_id": g["id"]})
    shot = get(alice, f"/api/shots/{ok(made, 201)['id']}", made)
    assert [(i["generation_id"], i["timeline_frame"]) for i in shot["images"]] == [(g["id"], 0)]


def test_reordering_assigns_frames_fifty_apart_in_the_given_order(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    sid = ok(alice.post("/api/shots", json={"project_id": pid, "name": "S"}), 201)["id"]
    ids = [image(alice, pid, shot_id=sid)["id"] for _ in range(3)]
    done = alice.put(
        f"/api/shots/{sid}/generations/order", json={"orderedGenerationIds": ids[::-1]}
    )
    ok(done)
    images = get(alice, f"/api/shots/{sid}", done)["images"]
    assert [(i["generation_id"], i["timeline_frame"]) for i in images] == [
        (ids[2], 0),
        (ids[1], 50),
        (ids[0], 100),
    ]
    body = error_of(
        alice.put(f"/api/shots/{sid}/generations/order", json={"orderedGenerationIds": ["x"]}), 422
    )
    assert body["errors"][0]["path"].startswith("body.orderedGenerationIds")


def test_fix_spacing_duplicate_remove_delete_and_restore_a_shot(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    sid = ok(alice.post("/api/shots", json={"project_id": pid, "name": "Walk"}), 201)["id"]
    ids = [image(alice, pid)["id"] for _ in range(3)]
    for i, gid in enumerate(ids):
        ok(
            alice.post(
                "/api/shots/shot_generations",
                json={"shot_id": sid, "generation_id": gid, "timeline_frame": i * 7},
            ),
            201,
        )
    spaced = alice.post(f"/api/shots/{sid}/fix-spacing")
    assert [i["timeline_frame"] for i in get(alice, f"/api/shots/{sid}", spaced)["images"]] == [
        0,
        39,
        78,
    ]
    copied = alice.post(f"/api/shots/{sid}/duplicate")
    copy = get(alice, f"/api/shots/{ok(copied, 201)['id']}", copied)
    assert copy["name"] == "Walk (copy)" and len(copy["images"]) == 3
    removed = alice.delete(f"/api/shots/{sid}/generations/{ids[0]}")
    ok(removed)
    assert [i["generation_id"] for i in get(alice, f"/api/shots/{sid}", removed)["images"]] == ids[
        1:
    ]
    error_of(alice.delete(f"/api/shots/{sid}/generations/{ids[0]}"), 404)
    deleted = alice.delete(f"/api/shots/{sid}")
    ok(deleted)
    assert sid not in {s["id"] for s in get(alice, f"/api/shots?projectId={pid}", deleted)}
    error_of(alice.put(f"/api/shots/{sid}", json={"name": "x"}), 409)
    restored = alice.post(f"/api/shots/{sid}/restore")
    assert len(get(alice, f"/api/shots/{sid}", restored)["images"]) == 2
    error_of(alice.post(f"/api/shots/{sid}/restore"), 422)


def test_renaming_a_shot_and_adding_unknown_generations(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    sid = ok(alice.post("/api/shots", json={"project_id": pid, "name": "S"}), 201)["id"]
    renamed = alice.put(f"/api/shots/{sid}", json={"name": "Renamed"})
    assert get(alice, f"/api/shots/{sid}", renamed)["name"] == "Renamed"
    error_of(
        alice.post(
            "/api/shots/shot_generations",
            json={"shot_id": sid, "generation_id": "00000000-0000-0000-0000-000000000000"},
        ),
        404,
    )
    error_of(alice.get("/api/shots"), 422)


# -- generations and variants --------------------------------------------------------
def test_the_gallery_pages_newest_first_and_filters(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    sid = ok(alice.post("/api/shots", json={"project_id": pid, "name": "S"}), 201)["id"]
    made = [image(alice, pid)["id"] for _ in range(5)]
    video = image(alice, pid, type="video", location="/media/v.mp4")["id"]
    unpositioned = image(alice, pid, shot_id=sid, with_position=False)["id"]
    starred = alice.patch(f"/api/generations/{made[0]}", json={"starred": True})
    ok(starred)
    at = position(starred)
    page = get(alice, f"/api/generations?projectId={pid}&limit=3", at)
    assert [g["id"] for g in page["items"]] == [unpositioned, video, made[4]]
    rest = get(alice, f"/api/generations?projectId={pid}&limit=10&cursor={page['next_cursor']}", at)
    assert [g["id"] for g in rest["items"]] == made[3::-1] and rest["next_cursor"] is None
    assert [
        g["id"] for g in get(alice, f"/api/generations?projectId={pid}&starred=true", at)["items"]
    ] == [made[0]]
    assert [
        g["id"] for g in get(alice, f"/api/generations?projectId={pid}&type=video", at)["items"]
    ] == [video]
    assert [
        g["id"] for g in get(alice, f"/api/generations?projectId={pid}&shotId={sid}", at)["items"]
    ] == [unpositioned]
    assert [
        g["id"]
        for g in get(alice, f"/api/generations?projectId={pid}&unpositionedInShot={sid}", at)[
            "items"
        ]
    ] == [unpositioned]
    assert unpositioned not in {
        g["id"]
        for g in get(alice, f"/api/generations?projectId={pid}&notInShot=true&limit=50", at)[
            "items"
        ]
    }
    error_of(alice.get(f"/api/generations?projectId={pid}&cursor=garbage"), 422)
    error_of(alice.get(f"/api/generations?projectId={pid}&limit=0"), 422)


def test_a_generation_is_read_starred_renamed_and_soft_deleted(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    gid = image(alice, pid, name="first", params={"prompt": "cat"})["id"]
    changed = alice.patch(f"/api/generations/{gid}", json={"starred": True, "name": "Cat"})
    g = get(alice, f"/api/generations/{gid}", changed)
    assert (g["starred"], g["name"], g["location"], g["type"]) == (
        True,
        "Cat",
        "/media/a.png",
        "image",
    )
    error_of(alice.patch(f"/api/generations/{gid}", json={}), 422)
    deleted = alice.delete(f"/api/generations/{gid}")
    ok(deleted)
    assert gid not in {
        x["id"] for x in get(alice, f"/api/generations?projectId={pid}", deleted)["items"]
    }
    error_of(alice.get(f"/api/generations/{gid}"), 404)


def test_variants_are_added_made_primary_and_deleted_but_never_the_original(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    made = image(alice, pid)
    gid, original = made["id"], made["variant_id"]
    added = alice.post(
        f"/api/generations/{gid}/variants",
        json={"location": "/media/up.png", "variant_type": "upscaled"},
    )
    vid = ok(added, 201)["id"]
    variants = get(alice, f"/api/generations/{gid}/variants", added)
    assert [(v["id"], v["is_primary"]) for v in variants] == [(original, True), (vid, False)]
    primary = alice.post(f"/api/generations/{gid}/variants/{vid}/primary")
    assert get(alice, f"/api/generations/{gid}", primary)["location"] == "/media/up.png"
    body = error_of(alice.delete(f"/api/generations/{gid}/variants/{original}"), 409)
    assert body["code"] == "original_variant_protected"
    gone = alice.delete(f"/api/generations/{gid}/variants/{vid}")
    ok(gone)
    assert [v["id"] for v in get(alice, f"/api/generations/{gid}/variants", gone)] == [original]
    assert get(alice, f"/api/generations/{gid}", gone)["location"] == "/media/a.png"
    error_of(alice.post(f"/api/generations/{gid}/variants/{vid}/primary"), 404)


def test_a_variant_is_marked_viewed_starred_and_renamed_and_a_no_op_writes_nothing(
    server: Server,
) -> None:
    alice = server.user()
    pid = project(alice)
    made = image(alice, pid, name="upload")
    gid, original = made["id"], made["variant_id"]
    url = f"/api/generations/{gid}/variants/{original}"
    unseen = alice.patch(url, json={"viewed": False})
    assert ok(unseen)["viewed"] is False
    [row] = get(alice, f"/api/generations/{gid}/variants", unseen)
    assert (row["viewed"], row["starred"], row["name"]) == (False, False, None)
    changed = alice.patch(url, json={"viewed": True, "starred": True, "name": " Hero "})
    assert {k: ok(changed)[k] for k in ("variant_id", "viewed", "starred", "name")} == {
        "variant_id": original,
        "viewed": True,
        "starred": True,
        "name": "Hero",
    }
    [row] = get(alice, f"/api/generations/{gid}/variants", changed)
    assert (row["viewed"], row["starred"], row["name"]) == (True, True, "Hero")
    # The primary variant's name is what the gallery shows.
    assert get(alice, f"/api/generations/{gid}", changed)["name"] == "Hero"
    head = ok(alice.get("/health"))["head_position"]
    again = alice.patch(url, json={"starred": True, "name": "Hero"})
    assert ok(again)["starred"] is True
    assert ok(alice.get("/health"))["head_position"] == head
    cleared = alice.patch(url, json={"name": None})
    assert get(alice, f"/api/generations/{gid}", cleared)["name"] == "upload"


def test_a_variant_patch_refuses_an_empty_or_null_body_and_unknown_ids(server: Server) -> None:
    alice = server.user()
    made = image(alice, project(alice))
    url = f"/api/generations/{made['id']}/variants/{made['variant_id']}"
    error_of(alice.patch(url, json={}), 422)
    error_of(alice.patch(url, json={"viewed": None}), 422)
    error_of(alice.patch(url, json={"starred": "very"}), 422)
    error_of(alice.patch(url, json={"name": "n" * 501}), 422)
    zero = "00000000-0000-0000-0000-000000000000"
    error_of(
        alice.patch(f"/api/generations/{made['id']}/variants/{zero}", json={"viewed": True}), 404
    )
    error_of(
        alice.patch(
            f"/api/generations/{zero}/variants/{made['variant_id']}", json={"viewed": True}
        ),
        404,
    )
    ok(alice.delete(f"/api/generations/{made['id']}"))
    assert error_of(alice.patch(url, json={"viewed": True}), 409)["code"] == "deleted"


def test_a_generation_based_on_another_and_bad_inputs(server: Server) -> None:
    alice = server.user()
    pid = project(alice)
    source = image(alice, pid)["id"]
    made = alice.post(
        "/api/generations", json={"project_id": pid, "location": "/m/b.png", "based_on": source}
    )
    assert get(alice, f"/api/generations/{ok(made, 201)['id']}", made)["based_on"] == source
    body = error_of(
        alice.post("/api/generations", json={"project_id": pid, "location": "", "type": "gif"}), 422
    )
    assert {e["path"] for e in body["errors"]} == {"body.location", "body.type"}
