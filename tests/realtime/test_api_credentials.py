"""Credentials that must expire, user ids that must be UUIDs, and the daily upload quota:
through real server processes (the default configuration, and configured ones)."""

from __future__ import annotations

import io
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
from PIL import Image

from darkroom.database import Database, drop_schema
from realtime.auth import issue_jwt
from tests.realtime.api_harness import (
    JWT_SECRET,
    Server,
    error_of,
    ok,
    server,
    start_server,
    stop_server,
)

__all__ = ["server"]

DAY = 24 * 3600
QUOTA = 200 * 1024  # bytes per user per day on the quota server


def signed(**claims: object) -> str:
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def refused(server: Server, token: str) -> dict[str, object]:
    return error_of(server.client(token).get("/api/credits"), 401)


def test_a_jwt_without_exp_is_refused_naming_the_claim(server: Server) -> None:
    body = refused(server, signed(sub=str(uuid.uuid4()), iat=int(time.time())))
    assert body["code"] == "token_without_expiry"
    assert "exp" in str(body["message"]) and "86400" in str(body["message"])
    assert (
        refused(server, issue_jwt(JWT_SECRET, str(uuid.uuid4()), ttl_s=None))["code"]
        == "token_without_expiry"
    )


def test_a_jwt_living_longer_than_the_maximum_is_refused_with_its_lifetime(server: Server) -> None:
    now = int(time.time())
    body = refused(server, signed(sub=str(uuid.uuid4()), iat=now, exp=now + 30 * DAY))
    assert body["code"] == "token_lifetime_too_long"
    assert "2592000 s (exp - iat)" in str(body["message"]) and body["max_lifetime_s"] == DAY
    # Without iat the lifetime left counts; with one, the whole lifetime (exp - iat).
    assert (
        refused(server, signed(sub=str(uuid.uuid4()), exp=now + 2 * DAY))["code"]
        == "token_lifetime_too_long"
    )
    assert (
        refused(server, signed(sub=str(uuid.uuid4()), iat=now - 10 * DAY, exp=now + 60))["code"]
        == "token_lifetime_too_long"
    )
    within = signed(sub=str(uuid.uuid4()), iat=now, exp=now + DAY - 60)
    assert "balance" in ok(server.client(within).get("/api/credits"))


def test_a_sub_that_is_not_a_uuid_is_refused_naming_the_value(server: Server) -> None:
    now = int(time.time())
    body = refused(server, signed(sub="admin", iat=now, exp=now + 60))
    assert body["code"] == "invalid_subject" and "'admin'" in str(body["message"])
    assert "not a UUID" in str(body["message"])
    assert refused(server, signed(iat=now, exp=now + 60))["code"] == "invalid_subject"
    assert (
        error_of(server.service(act_as="admin").get("/api/credits"), 401)["code"]
        == "invalid_subject"
    )


def test_a_uuid_sub_is_one_user_whatever_its_spelling(server: Server) -> None:
    user = uuid.uuid4()
    upper = server.client(issue_jwt(JWT_SECRET, str(user).upper()))
    made = ok(upper.post("/api/projects", json={"name": "Spelled"}), 201)
    lower = server.client(issue_jwt(JWT_SECRET, str(user)))
    names = {p["name"] for p in ok(lower.get(f"/api/projects?min_position={made['position']}"))}
    assert "Spelled" in names
    acting = server.service(act_as=user.hex)
    assert "Spelled" in {p["name"] for p in ok(acting.get("/api/projects"))}


@pytest.fixture(scope="module")
def configured(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Any printable sub allowed, tokens of at most a minute, a small upload quota."""
    running = start_server(
        database,
        f"{schema}_cfg",
        tmp_path_factory.mktemp("cfg"),
        DARKROOM_JWT_SUB_ANY="y",
        DARKROOM_JWT_MAX_LIFETIME_S="60",
        DARKROOM_UPLOAD_QUOTA_BYTES=str(QUOTA),
    )
    yield running
    stop_server(running)
    drop_schema(database, f"{schema}_cfg")


def test_the_options_allow_any_sub_and_bound_the_lifetime(configured: Server) -> None:
    now = int(time.time())
    named = f"alice-{uuid.uuid4().hex[:6]}"
    assert "balance" in ok(
        configured.client(signed(sub=named, iat=now, exp=now + 50)).get("/api/credits")
    )
    body = refused(configured, signed(sub=named, iat=now, exp=now + 3600))
    assert body["code"] == "token_lifetime_too_long" and "60 s" in str(body["message"])
    assert (
        refused(configured, signed(sub="bad\tid", iat=now, exp=now + 50))["code"]
        == "invalid_subject"
    )


def quota_user(server: Server) -> httpx.Client:
    now = int(time.time())
    return server.client(signed(sub=str(uuid.uuid4()), iat=now, exp=now + 55))


def upload(client: httpx.Client, size: int) -> httpx.Response:
    """`size` bytes that are an image (uploads are decoded): a PNG padded with a private
    chunk, which decoders skip (fewer bytes than a PNG needs: bytes that are none)."""
    return client.post(
        "/api/uploads", files={"file": ("f.bin", png_of_size(size), "application/octet-stream")}
    )


def png_of_size(size: int) -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", (2, 2)).save(picture, "PNG")
    data = picture.getvalue()
    if size < len(data) + 12:
        return b"x" * size
    padding = b"prVt" + b"\0" * (size - len(data) - 12)
    chunk = (
        struct.pack(">I", len(padding) - 4)
        + padding
        + struct.pack(">I", zlib.crc32(padding) & 0xFFFFFFFF)
    )
    return data[:33] + chunk + data[33:]  # after the 8-byte signature and 25-byte IHDR


def test_uploads_count_against_a_daily_quota_per_user(configured: Server) -> None:
    alice, bob = quota_user(configured), quota_user(configured)
    ok(upload(alice, 120 * 1024), 201)
    ok(upload(alice, 60 * 1024), 201)
    refusal = upload(alice, 30 * 1024)
    body = error_of(refusal, 429)
    assert body["code"] == "upload_quota_exceeded"
    assert body["used_bytes"] == 180 * 1024 and body["quota_bytes"] == QUOTA
    assert body["upload_bytes"] == 30 * 1024 and str(30 * 1024) in str(body["message"])
    assert 0 < int(refusal.headers["retry-after"]) <= DAY + 1
    ok(upload(alice, 20 * 1024), 201)  # what is left still fits
    assert error_of(upload(alice, 1), 429)["used_bytes"] == QUOTA
    ok(upload(bob, 120 * 1024), 201)  # another user has a quota of their own
    ok(upload(configured.service(), 300 * 1024), 201)  # the service key is not counted


def test_one_upload_larger_than_the_whole_quota_is_413_before_it_is_read(
    configured: Server,
) -> None:
    body = error_of(upload(quota_user(configured), 400 * 1024), 413)
    assert body["code"] == "upload_over_quota" and body["quota_bytes"] == QUOTA


def test_a_streamed_upload_is_cut_off_once_it_passes_what_is_left(configured: Server) -> None:
    user = quota_user(configured)
    ok(upload(user, 150 * 1024), 201)
    boundary = "b0undary"

    def body() -> Iterator[bytes]:  # no Content-Length: the stream is counted
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        for _ in range(64):
            yield b"y" * 4096
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = user.post(
        "/api/uploads",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert error_of(answer, 429)["code"] == "upload_quota_exceeded"


def test_concurrent_uploads_never_pass_the_quota_together(configured: Server) -> None:
    user = quota_user(configured)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: upload(user, 30 * 1024), range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 6 + [429] * 2, statuses
    assert error_of(upload(user, 30 * 1024), 429)["used_bytes"] == 180 * 1024


def test_the_quota_is_kept_in_the_database_across_a_restart(
    database: Database, schema: str, tmp_path: Path, configured: Server
) -> None:
    now = int(time.time())
    token = signed(sub=str(uuid.uuid4()), iat=now, exp=now + 55)
    ok(upload(configured.client(token), 190 * 1024), 201)
    again = start_server(
        database,
        f"{schema}_cfg",
        tmp_path,
        DARKROOM_JWT_SUB_ANY="y",
        DARKROOM_UPLOAD_QUOTA_BYTES=str(QUOTA),
    )
    try:
        assert error_of(upload(again.client(token), 20 * 1024), 429)["used_bytes"] == 190 * 1024
    finally:
        stop_server(again)
