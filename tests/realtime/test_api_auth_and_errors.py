"""Who may call, and how every refusal looks: through a real server process."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import psycopg

from darkroom.database import Database, drop_schema
from projections import view_classes
from projections.db import lock_key
from realtime.api import ENDPOINTS
from tests.realtime.api_harness import (
    JWT_SECRET,
    SERVICE_KEY,
    Server,
    error_of,
    ok,
    position,
    server,
    start_server,
    stop_server,
)

__all__ = ["server"]


def test_health_answers_without_credentials_with_the_head_position(server: Server) -> None:
    body = ok(server.client().get("/health"))
    assert body["status"] == "ok" and isinstance(body["head_position"], int)


def test_a_request_without_credentials_is_refused_with_401(server: Server) -> None:
    body = error_of(server.client().get("/api/projects"), 401)
    assert body["code"] == "missing_credentials"
    assert (
        error_of(server.client(**{"Authorization": "Basic abc"}).get("/api/projects"), 401)["code"]
        == "invalid_credentials"
    )


def test_a_jwt_signed_with_another_secret_or_expired_is_refused(server: Server) -> None:
    forged = jwt.encode(
        {"sub": "mallory"}, "another-secret-of-at-least-32-bytes!", algorithm="HS256"
    )
    assert error_of(server.client(forged).get("/api/projects"), 401)["code"] == "invalid_token"
    expired = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) - 10}, JWT_SECRET, algorithm="HS256"
    )
    assert error_of(server.client(expired).get("/api/projects"), 401)["code"] == "token_expired"
    no_subject = jwt.encode({"name": "x"}, JWT_SECRET, algorithm="HS256")
    error_of(server.client(no_subject).get("/api/projects"), 401)


def test_a_personal_access_token_works_until_it_is_revoked(server: Server) -> None:
    alice = server.user()
    issued = ok(alice.post("/api/tokens", json={"label": "laptop"}), 201)
    assert (
        issued["token"].startswith("drk_")
        and position(alice.post("/api/tokens", json={"label": "other"})) > 0
    )
    pat = server.client(issued["token"])
    created = ok(pat.post("/api/projects", json={"name": "Via PAT"}), 201)
    assert (
        ok(alice.get(f"/api/projects/{created['id']}?min_position={created['position']}"))["name"]
        == "Via PAT"
    )
    listed = ok(alice.get("/api/tokens"))
    assert {t["label"] for t in listed} == {"laptop", "other"}
    assert all("token" not in t for t in listed)
    ok(alice.delete(f"/api/tokens/{issued['id']}"))
    assert error_of(pat.get("/api/projects"), 401)["code"] == "invalid_token"
    assert {t["label"] for t in ok(alice.get("/api/tokens"))} == {"other"}


def test_an_unknown_access_token_is_refused(server: Server) -> None:
    assert error_of(server.client("drk_nope").get("/api/credits"), 401)["code"] == "invalid_token"


def test_the_service_key_acts_for_a_user_only_when_it_names_one(server: Server) -> None:
    bare = server.service()
    assert error_of(bare.get("/api/projects"), 403)["code"] == "user_required"
    acting = server.service(act_as=str(uuid.uuid4()))
    assert ok(acting.get("/api/projects"))[0]["name"] == "Default Project"


def test_service_only_routes_refuse_users_with_403(server: Server) -> None:
    user = server.user()
    body = error_of(
        user.post("/api/credits/grant", json={"user_id": "x", "amount": 1, "reason": "gift"}), 403
    )
    assert body["code"] == "service_only"


def test_malformed_json_answers_400_and_invalid_fields_422_with_their_paths(server: Server) -> None:
    alice = server.user()
    assert error_of(alice.post("/api/projects", content=b"{nope"), 400)["code"] == "malformed_json"
    assert error_of(alice.post("/api/projects", content=b""), 400)["code"] == "missing_body"
    body = error_of(alice.post("/api/projects", json={"name": "", "settings": 3}), 422)
    assert {e["path"] for e in body["errors"]} == {"body.name", "body.settings"}
    body = error_of(alice.post("/api/projects", json=[1, 2]), 422)
    assert body["code"] == "invalid_fields"


def test_a_nul_character_anywhere_in_the_input_is_a_422_naming_where(server: Server) -> None:
    """PostgreSQL text and jsonb cannot hold NUL: it must never reach the read models."""
    alice = server.user()
    body = error_of(
        alice.post("/api/projects", json={"name": "ok", "settings": {"a": ["x\u0000y"]}}), 422
    )
    assert body["errors"][0]["path"] == "body.settings.a.0"
    assert error_of(alice.get("/api/shots?projectId=%00"), 422)["code"] == "invalid_fields"
    assert (
        error_of(server.service(act_as="bad\tid").get("/api/credits"), 401)["code"]
        == "invalid_subject"
    )
    assert ok(alice.post("/api/projects", json={"name": "back\\u0000slash"}), 201)


def test_a_domain_refusal_is_a_422_with_the_domain_code(server: Server) -> None:
    alice = server.user()
    project = ok(alice.post("/api/projects", json={"name": "Live"}), 201)["id"]
    body = error_of(alice.post(f"/api/projects/{project}/restore"), 422)
    assert body["code"] == "invalid" and project in body["message"]


def test_an_aspect_ratio_outside_the_documented_enum_is_refused_as_a_field(server: Server) -> None:
    body = error_of(
        server.user().post("/api/projects", json={"name": "Wide", "aspect_ratio": "5:1"}), 422
    )
    assert body["code"] == "invalid_fields"
    assert body["errors"][0]["path"] == "body.aspect_ratio"


def test_a_malformed_id_in_the_path_is_a_422_naming_the_path(server: Server) -> None:
    body = error_of(server.user().get("/api/projects/not-a-uuid"), 422)
    assert body["errors"][0]["path"].startswith("path.id")


def test_unknown_routes_and_methods_answer_json_404_and_405(server: Server) -> None:
    alice = server.user()
    assert error_of(alice.get("/api/nothing-here"), 404)["code"] == "not_found"
    assert error_of(alice.patch("/api/projects"), 405)["code"] == "method_not_allowed"


def test_a_body_over_ten_mib_is_refused_with_413(server: Server) -> None:
    big = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    assert (
        error_of(server.user().post("/api/projects", content=big), 413)["code"] == "body_too_large"
    )


def test_a_read_waiting_for_a_position_never_written_is_refused_at_once(server: Server) -> None:
    alice = server.user()
    pid = ok(alice.post("/api/projects", json={"name": "Wait"}), 201)["id"]
    started = time.monotonic()
    body = error_of(alice.get(f"/api/projects/{pid}?min_position=999999999"), 422)
    assert body["code"] == "position_not_written" and time.monotonic() - started < 2


def test_a_read_whose_views_lag_past_the_timeout_answers_504_then_catches_up(
    database: Database, schema: str, tmp_path: Path
) -> None:
    """Hold every view's runner lock: the server's runner waits as a standby."""
    keys = [lock_key(f"view:{name}", f"{schema}_lag") for name in view_classes()]
    with psycopg.connect(database.conninfo, autocommit=True) as holder:
        for key in keys:
            holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        lagging = start_server(database, f"{schema}_lag", tmp_path, DARKROOM_READ_TIMEOUT_S="1")
        try:
            alice = lagging.user()
            made = alice.post("/api/projects", json={"name": "Later"})
            path = f"/api/projects/{ok(made, 201)['id']}?min_position={position(made)}"
            assert error_of(alice.get(path), 504)["code"] == "view_timeout"
            with ThreadPoolExecutor(16) as pool:  # 16 reads wait; a command is not held up
                waiting = [pool.submit(lagging.user().get, path) for _ in range(16)]
                time.sleep(0.2)
                started = time.monotonic()
                ok(alice.post("/api/projects", json={"name": "Meanwhile"}), 201)
                assert time.monotonic() - started < 0.5
                assert {w.result().status_code for w in waiting} == {504}
            for key in keys:
                holder.execute("SELECT pg_advisory_unlock(%s)", (key,))
            deadline = time.monotonic() + 15
            while (answer := alice.get(path)).status_code == 504:
                assert time.monotonic() < deadline
            assert ok(answer)["name"] == "Later"
        finally:
            stop_server(lagging)
            drop_schema(database, f"{schema}_lag")


def test_the_openapi_document_lists_every_route_with_its_schemas(server: Server) -> None:
    doc = ok(server.client().get("/openapi.json"))
    for endpoint in ENDPOINTS:
        op = doc["paths"][endpoint.path][endpoint.method.lower()]
        assert str(endpoint.status) in op["responses"]
        if endpoint.body is not None:
            assert "application/json" in op["requestBody"]["content"]
    assert doc["paths"]["/api/tasks"]["post"]["requestBody"]["content"]["application/json"]
    assert "TaskCreate" in doc["components"]["schemas"]
    assert SERVICE_KEY not in str(doc)
