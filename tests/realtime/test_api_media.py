"""Uploads are decoded before they are stored and get a real thumbnail; media URLs are
signed and expire (issue 13, item 6). Through a real server."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import psycopg
import pytest
from PIL import Image
from psycopg import sql
from websockets.asyncio.client import connect

from darkroom.database import Database, drop_schema
from inference.frames import encode_mp4
from inference.media import S3MediaStore
from realtime.api.media import MediaUrls, media_secret
from realtime.api.sniffing import inspect
from realtime.errors import MediaTooLargeError, MediaTypeMismatchError
from tests.domain.test_resources import PAIR, safetensors
from tests.realtime.api_harness import (
    JWT_SECRET,
    Server,
    error_of,
    free_port,
    ok,
    position,
    start_server,
    stop_server,
)
from tests.realtime.hub_harness import Client
from tests.realtime.test_api_workers import claim, user_with_credits, wid, worker_of

MEDIA_SECRET = "test-media-secret"
# Reads wait for the views this long (the harness's 3 s is short for a server that has just
# started on a busy 2-core box).
PATIENT = {"DARKROOM_READ_TIMEOUT_S": "15"}
SIGNER = MediaUrls(MEDIA_SECRET)  # the server's


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        database,
        schema,
        tmp_path_factory.mktemp("media"),
        DARKROOM_MEDIA_SECRET=MEDIA_SECRET,
        **PATIENT,
    )
    yield running
    stop_server(running)


def test_without_a_media_secret_one_is_derived_from_the_jwt_secret() -> None:
    derived = media_secret("", JWT_SECRET)
    assert derived == media_secret(None, JWT_SECRET) != media_secret("", JWT_SECRET + "x")
    assert JWT_SECRET not in derived and media_secret(MEDIA_SECRET, JWT_SECRET) == MEDIA_SECRET


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 30)).save(out, "JPEG")
    return out.getvalue()


def claiming_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (a decompression bomb's shape)."""
    ihdr = struct.pack(">II", width, height) + data[24:29]
    chunk = b"IHDR" + ihdr
    return (
        data[:8]
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
        + data[33:]
    )


def upload(
    client: httpx.Client, data: bytes, name: str = "picture.png", content_type: str = "image/png"
) -> httpx.Response:
    return client.post("/api/uploads", files={"file": (name, data, content_type)})


def stored_files(server: Server) -> set[str]:
    folder = server.data_dir / "media" / "uploads"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def bare(url: str) -> str:
    return urlsplit(url).path


def media_strings(data: Any) -> list[str]:
    if isinstance(data, str):
        return [data] if data.startswith("/media/") else []
    if isinstance(data, dict):
        return [s for value in data.values() for s in media_strings(value)]
    if isinstance(data, list):
        return [s for value in data for s in media_strings(value)]
    return []


# ---- what an upload is --------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        (b"%PDF-1.7 definitely not pixels" * 40, "image/png", "unsupported_media"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 200, "image/png", "unsupported_media"),  # a broken PNG
        (b"plain text, declared as nothing", "application/octet-stream", "unsupported_media"),
        (jpeg(32, 32), "image/png", "media_type_mismatch"),
        (png(32, 32), "video/mp4", "media_type_mismatch"),
        (claiming_size(png(8, 8), 60_000, 60_000), "image/png", "media_too_many_pixels"),
    ],
    ids=["pdf-as-png", "broken-png", "text", "jpeg-declared-png", "png-declared-mp4", "bomb"],
)
def test_bytes_that_are_not_what_an_upload_must_be_are_refused_and_nothing_is_stored(
    server: Server, data: bytes, content_type: str, code: str
) -> None:
    before = stored_files(server)
    body = error_of(upload(server.user(), data, content_type=content_type), 422)
    assert body["code"] == code and "picture.png" in body["message"]
    assert stored_files(server) == before


def test_a_png_is_stored_with_a_webp_thumbnail_of_at_most_256_px(server: Server) -> None:
    user = server.user()
    body = ok(upload(user, png(640, 320)), 201)
    assert (body["type"], body["content_type"], body["width"], body["height"]) == (
        "image",
        "image/png",
        640,
        320,
    )
    assert body["thumbnail_url"] != body["location"]
    original = user.get(body["location"])
    assert original.status_code == 200 and Image.open(io.BytesIO(original.content)).size == (
        640,
        320,
    )
    thumbnail = user.get(body["thumbnail_url"])
    assert thumbnail.status_code == 200
    small = Image.open(io.BytesIO(thumbnail.content))
    assert small.format == "WEBP" and small.size == (256, 128)
    assert small.convert("RGB").getpixel((128, 64)) == pytest.approx((200, 40, 90), abs=8)


def test_the_stored_suffix_is_what_the_bytes_are_not_the_file_name(server: Server) -> None:
    body = ok(
        upload(
            server.user(), jpeg(20, 10), name="holiday.png", content_type="application/octet-stream"
        ),
        201,
    )
    assert bare(body["location"]).endswith(".jpg") and body["content_type"] == "image/jpeg"


def test_a_video_is_stored_with_its_first_frame_as_thumbnail(server: Server) -> None:
    user = server.user()
    frames = np.zeros((4, 48, 64, 3), dtype=np.uint8)
    frames[0, :, :] = (250, 10, 10)  # the first frame is red, the rest black
    body = ok(upload(user, encode_mp4(frames, 8), "clip.mp4", "video/mp4"), 201)
    assert (body["type"], body["content_type"], body["width"], body["height"]) == (
        "video",
        "video/mp4",
        64,
        48,
    )
    assert bare(body["location"]).endswith(".mp4")
    small = Image.open(io.BytesIO(user.get(body["thumbnail_url"]).content)).convert("RGB")
    assert small.size == (64, 48)
    red, green, blue = small.getpixel((32, 24))
    assert red > 200 and green < 60 and blue < 60


# ---- signed URLs ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def uploaded(server: Server) -> dict[str, Any]:
    return ok(upload(server.user(), png(64, 64)), 201)  # type: ignore[no-any-return]


def test_a_signed_url_answers_200_to_anyone_who_has_it(
    server: Server, uploaded: dict[str, Any]
) -> None:
    query = parse_qs(urlsplit(uploaded["location"]).query)
    assert set(query) == {"exp", "sig"}
    assert 3600 <= int(query["exp"][0]) - time.time() <= 3600 + 300
    assert server.client().get(uploaded["location"]).status_code == 200


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda url: bare(url), "media_url_unsigned"),
        (lambda url: url[:-2] + ("AA" if not url.endswith("AA") else "BB"), "media_url_invalid"),
        (lambda url: url.replace("exp=", "exp=9"), "media_url_invalid"),  # a longer life
        (lambda url: SIGNER.sign(bare(url), exp=int(time.time()) - 1), "media_url_expired"),
        (
            lambda url: SIGNER.sign(bare(url).replace(".png", ".jpg")).replace(".jpg", ".png"),
            "media_url_invalid",
        ),  # another file's signature
    ],
    ids=["unsigned", "tampered-sig", "tampered-exp", "expired", "other-file"],
)
def test_an_unsigned_tampered_or_expired_media_url_answers_403(
    server: Server, uploaded: dict[str, Any], change: Any, code: str
) -> None:
    body = error_of(server.client().get(change(uploaded["location"])), 403)
    assert body["code"] == code and bare(uploaded["location"]) in body["message"]


def test_a_url_signed_with_another_secret_answers_403(
    server: Server, uploaded: dict[str, Any]
) -> None:
    forged = MediaUrls("not the server's secret").sign(bare(uploaded["location"]))
    assert error_of(server.client().get(forged), 403)["code"] == "media_url_invalid"


def test_a_signed_url_sent_back_is_stored_as_its_bare_location(
    server: Server, uploaded: dict[str, Any]
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Back"}), 201)["id"]
    made = user.post(
        "/api/generations", json={"project_id": project, "location": uploaded["location"]}
    )
    shown = ok(user.get(f"/api/generations/{ok(made, 201)['id']}?min_position={position(made)}"))
    # Signed again on the way out: the same file, a signature of its own (not the stored
    # one) that answers 200.
    assert bare(shown["location"]) == bare(uploaded["location"])
    assert server.client().get(shown["location"]).status_code == 200


# ---- every route that answers a location answers a signed URL -------------------------
@pytest.fixture(scope="module")
def world(server: Server) -> dict[str, Any]:
    """A project with an uploaded image as a generation (in a shot, with a variant) and a
    task a worker completed with an uploaded output."""
    alice, _ = user_with_credits(server)
    worker = worker_of(server, alice)
    image = ok(upload(alice, png(48, 32)), 201)
    output = ok(upload(worker, png(32, 48)), 201)
    variant = ok(upload(alice, png(16, 16)), 201)
    project = ok(alice.post("/api/projects", json={"name": "Signed"}), 201)["id"]
    shot = ok(alice.post("/api/shots", json={"project_id": project, "name": "S"}), 201)["id"]
    made = ok(
        alice.post(
            "/api/generations",
            json={
                "project_id": project,
                "location": image["location"],
                "thumbnail_url": image["thumbnail_url"],
                "shot_id": shot,
            },
        ),
        201,
    )
    generation = made["id"]
    ok(
        alice.post(
            f"/api/generations/{generation}/variants",
            json={"location": variant["location"], "thumbnail_url": variant["thumbnail_url"]},
        ),
        201,
    )
    task = ok(
        alice.post(
            "/api/tasks",
            json={
                "task_type": "image_upscale",
                "project_id": project,
                "params": {
                    "image_url": image["location"],
                    "based_on": generation,
                    "scale_factor": 2,
                },
            },
        ),
        201,
    )["task_id"]
    claimed = ok(claim(worker))
    assert claimed["task_id"] == task
    done = worker.post(
        f"/api/tasks/{task}/complete",
        json={
            "worker_id": wid(worker),
            "output_location": output["location"],
            "thumbnail_url": output["thumbnail_url"],
        },
    )
    ok(done)
    derived = ok(
        alice.post(
            "/api/generations",
            json={"project_id": project, "location": output["location"], "based_on": generation},
        ),
        201,
    )["id"]
    gone = ok(
        alice.post(
            "/api/generations", json={"project_id": project, "location": variant["location"]}
        ),
        201,
    )["id"]
    ok(alice.delete(f"/api/generations/{gone}"))
    lora = alice.post("/api/resources", files={"file": ("grain.safetensors", safetensors(PAIR))})
    ok(lora, 201)
    return {
        "alice": alice,
        "worker": worker,
        "claimed": claimed,
        "project": project,
        "shot": shot,
        "generation": generation,
        "task": task,
        "derived": derived,
        "seen": f"min_position={position(lora)}",
    }


ROUTES = [
    "/api/generations?projectId={project}",
    "/api/generations/{generation}",
    "/api/generations/{generation}/variants",
    "/api/generations/{derived}/lineage",
    "/api/generations/{generation}/lineage",
    "/api/tasks/{task}",
    "/api/tasks?projectId={project}",
    "/api/shots/{shot}",
    "/api/shots?projectId={project}",
    "/api/generations/{generation}/task",
    "/api/generations?projectId={project}&deleted=true",
    "/api/resources",
]


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_that_answers_a_location_answers_signed_urls_that_load(
    server: Server, world: dict[str, Any], route: str
) -> None:
    path = route.format(**world)
    answer = ok(world["alice"].get(f"{path}{'&' if '?' in path else '?'}{world['seen']}"))
    found = media_strings(answer)
    assert found, f"{path} answered no media location: {answer}"
    anonymous = server.client()
    for url in found:
        assert set(parse_qs(urlsplit(url).query)) == {"exp", "sig"}, (path, url)
        assert anonymous.get(url).status_code == 200, (path, url)


def test_a_workers_claim_carries_signed_input_urls_it_can_fetch(
    server: Server, world: dict[str, Any]
) -> None:
    image_url = world["claimed"]["params"]["image_url"]
    assert set(parse_qs(urlsplit(image_url).query)) == {"exp", "sig"}
    assert world["worker"].get(image_url).status_code == 200


def test_the_views_keep_bare_locations(
    database: Database, schema: str, world: dict[str, Any]
) -> None:
    ok(world["alice"].get(f"/api/tasks/{world['task']}?{world['seen']}"))  # views caught up
    with psycopg.connect(database.conninfo) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE "
            "table_schema = %s AND column_name IN ('location', 'thumbnail_url', "
            "'output_location')",
            (schema,),
        ).fetchall()
        values = [
            value
            for table, column in columns
            for (value,) in conn.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.Identifier(column), sql.Identifier(schema, table)
                )
            ).fetchall()
            if value
        ]
    assert any(v.startswith("/media/uploads/") for v in values), values
    assert [v for v in values if "?" in v] == []


def test_one_file_has_one_url_for_a_while_so_browsers_can_cache_it(world: dict[str, Any]) -> None:
    first = ok(world["alice"].get(f"/api/generations/{world['generation']}?{world['seen']}"))
    again = ok(world["alice"].get(f"/api/generations/{world['generation']}?{world['seen']}"))
    step = 300  # exp is rounded up to the next 300 s
    crossed = int(time.time()) % step < 2
    assert first["location"] == again["location"] or crossed


# ---- the websocket hub signs at the edge too --------------------------------------------
async def test_websocket_snapshots_and_changes_carry_signed_urls_that_load(
    server: Server, uploaded: dict[str, Any]
) -> None:
    user = server.user()
    project = ok(user.post("/api/projects", json={"name": "Live"}), 201)["id"]
    made = user.post(
        "/api/generations", json={"project_id": project, "location": uploaded["location"]}
    )
    generation = ok(made, 201)["id"]
    ok(user.get(f"/api/generations/{generation}?min_position={position(made)}"))
    url = server.base_url.replace("http://", "ws://") + "/ws"
    async with connect(url) as ws:
        client = Client(ws)
        await client.send({"type": "auth", "token": user.headers["Authorization"][7:]})
        assert (await client.recv())["type"] == "ready"
        subscribed = await client.subscribe(f"generation:{generation}")
        snapshot_urls = media_strings(subscribed["snapshot"])
        added = user.post(
            f"/api/generations/{generation}/variants",
            json={"location": uploaded["thumbnail_url"], "variant_type": "edit"},
        )
        ok(added, 201)
        change_urls: list[str] = []
        while not change_urls:
            frame = await client.recv(timeout=15)
            if frame["type"] == "change":
                change_urls = media_strings(frame["data"])
    assert snapshot_urls and change_urls
    for found in (*snapshot_urls, *change_urls):
        assert set(parse_qs(urlsplit(found).query)) == {"exp", "sig"}, found
        assert server.client().get(found).status_code == 200, found
    assert bare(uploaded["thumbnail_url"]) in {bare(u) for u in change_urls}


def test_a_signed_url_of_a_file_that_is_not_there_is_404(server: Server) -> None:
    missing = SIGNER.sign("/media/uploads/" + "0" * 32 + ".png")
    assert error_of(server.client().get(missing), 404)["code"] == "not_found"


# ---- an S3 store: the bucket's presigned URLs for task outputs ----------------------------
BUCKET = "darkroom-media"
S3_KEYS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3 (moto's server: real HTTP, in a thread; it checks no signatures)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    yield f"http://127.0.0.1:{port}"
    moto.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str, monkeypatch_module: pytest.MonkeyPatch) -> S3MediaStore:
    for key, value in S3_KEYS.items():
        monkeypatch_module.setenv(key, value)
    store = S3MediaStore(BUCKET, s3_endpoint, region_name="us-east-1")
    store.client.create_bucket(Bucket=BUCKET)
    return store


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def s3_server(
    database: Database,
    schema: str,
    s3_endpoint: str,
    bucket: S3MediaStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    running = start_server(
        database,
        f"{schema}_s3",
        tmp_path_factory.mktemp("s3"),
        DARKROOM_MEDIA_SECRET=MEDIA_SECRET,
        DARKROOM_S3_BUCKET=BUCKET,
        DARKROOM_S3_ENDPOINT=s3_endpoint,
        DARKROOM_S3_REGION="us-east-1",
        DARKROOM_MEDIA_URL_TTL_S="600",
        **S3_KEYS,
        **PATIENT,
    )
    yield running
    stop_server(running)
    drop_schema(database, f"{schema}_s3")


def test_with_an_s3_store_outputs_get_presigned_urls_and_uploads_signed_local_ones(
    s3_server: Server, bucket: S3MediaStore
) -> None:
    user = s3_server.user()
    picture = png(24, 24)
    output = bucket.put(picture, ".png", "image/png")  # as the dispatcher stores a result
    project = ok(user.post("/api/projects", json={"name": "Bucket"}), 201)["id"]
    made = user.post("/api/generations", json={"project_id": project, "location": output})
    shown = ok(user.get(f"/api/generations/{ok(made, 201)['id']}?min_position={position(made)}"))
    url = urlsplit(shown["location"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}" == bucket.client.meta.endpoint_url
    assert url.path == f"/{BUCKET}{output}"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "600"
    assert query["X-Amz-Credential"].startswith("test-key/") and len(query["X-Amz-Signature"]) == 64
    assert httpx.get(shown["location"]).content == picture
    # An upload through the API stays in the server's folder: a signed local URL.
    uploaded = ok(upload(user, png(12, 12)), 201)
    assert set(parse_qs(urlsplit(uploaded["location"]).query)) == {"exp", "sig"}
    assert s3_server.client().get(uploaded["location"]).status_code == 200


def test_only_strings_that_are_whole_locations_are_signed() -> None:
    location = "/media/uploads/" + "ab" * 16 + ".png"
    text = json.dumps(
        {
            "a": location,
            "b": [location],
            "c": f"see {location}",
            "d": f'"{location}"',
            "e": location + "-x",
            "f": "/media/a.png",
        }
    )
    signed = json.loads(SIGNER.sign_text(text))
    assert bare(signed["a"]) == bare(signed["b"][0]) == location != signed["a"]
    assert {k: signed[k] for k in "cdef"} == {k: json.loads(text)[k] for k in "cdef"}


def test_a_video_with_more_pixels_than_allowed_or_declared_as_another_container_is_refused() -> (
    None
):
    clip = encode_mp4(np.zeros((2, 48, 64, 3), dtype=np.uint8), 8)
    assert inspect(io.BytesIO(clip), "video/quicktime", "clip.mov", 10_000).kind == "video"
    with pytest.raises(MediaTooLargeError, match="64x48"):
        inspect(io.BytesIO(clip), "video/mp4", "clip.mp4", 64 * 48 - 1)
    with pytest.raises(MediaTypeMismatchError, match="declared video/webm"):
        inspect(io.BytesIO(clip), "video/webm", "clip.webm", 10_000)
