"""No credential in any log line: a real `darkroom serve` is called with a JWT, a personal
access token and the service key, in headers, query strings and websocket frames; then
everything it wrote to stdout and stderr is searched for them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import websockets

from darkroom import redact
from darkroom.database import Database
from tests.darkroom.serving import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


async def _ws_session(url: str, auth_frame: str | None = None) -> tuple[str, int | None]:
    """(type of the first frame, or "closed"; close code) for one websocket session."""
    async with websockets.connect(url, open_timeout=20) as ws:
        if auth_frame is not None:
            await ws.send(json.dumps({"type": "auth", "token": auth_frame}))
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 20))
        except websockets.ConnectionClosed:
            return "closed", ws.close_code
        if first["type"] == "error":
            await asyncio.wait_for(ws.wait_closed(), 20)
            return "error", ws.close_code
        return str(first["type"]), None


@pytest.mark.timeout(180)
def test_no_token_or_key_reaches_the_server_output(
    database: Database, schema: str, tmp_path: Path
) -> None:
    jwt_secret, service_key = secrets.token_urlsafe(32), "svc-" + secrets.token_urlsafe(24)
    # The test server trusts local connections: a password in the URL is never asked
    # for, but it is a secret the process holds, so it is searched for too.
    db_password = database.password or "db-" + secrets.token_urlsafe(16)
    url = (
        f"postgresql://{database.user}:{db_password}@/{database.dbname}"
        f"?host={database.host}&port={database.port}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DARKROOM_DB_SCHEMA": schema,
        "DARKROOM_INFERENCE": "off",
        "DARKROOM_JWT_SECRET": jwt_secret,
        "DARKROOM_SERVICE_KEY": service_key,
        "DATA_DIR": str(tmp_path),
    }
    port = free_port()
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "darkroom", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
        )
    user = str(uuid.uuid4())
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, jwt_secret, algorithm="HS256")
    forged = jwt.encode(
        {"sub": user, "exp": int(time.time()) + 3600},
        "not-the-secret-" + secrets.token_urlsafe(32),
        algorithm="HS256",
    )
    used: dict[str, str] = {
        "jwt": token,
        "forged jwt": forged,
        "service key": service_key,
        "jwt secret": jwt_secret,
    }
    if len(db_password) >= 12:  # a short real one ("postgres") would match innocent text
        used["database password"] = db_password
    try:
        wait_until_serving(port, proc)
        bearer = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=30) as http:
            made = http.post("/api/tokens", json={"label": "logs"}, headers=bearer)
            assert made.status_code == 201, made.text
            pat = made.json()["token"]
            used["personal access token"] = pat
            revoked = http.post("/api/tokens", json={"label": "gone"}, headers=bearer).json()
            assert http.delete(
                f"/api/tokens/{revoked['token_id']}", headers=bearer
            ).status_code in (200, 204)
            used["revoked token"] = revoked["token"]
            # Headers: every kind of credential, good and bad.
            assert http.get("/api/projects", headers=bearer).status_code == 200
            assert (
                http.get("/api/projects", headers={"Authorization": f"Bearer {pat}"}).status_code
                == 200
            )
            assert (
                http.get(
                    "/api/projects",
                    headers={"Authorization": f"Bearer {service_key}", "X-Darkroom-User": user},
                ).status_code
                == 200
            )
            for bad in (forged, revoked["token"]):
                assert (
                    http.get(
                        "/api/projects", headers={"Authorization": f"Bearer {bad}"}
                    ).status_code
                    == 401
                )
            # Query strings: names in any case, percent-encoded, among other parameters.
            for query in (
                f"token={token}",
                f"access_token={pat}",
                f"ApiKey={service_key}",
                f"limit=5&TOKEN={forged}&x=1",
                f"%74oken={pat}",
                f"api_key={service_key}",
                f"jwt={token}",
            ):
                http.get(f"/api/projects?{query}")
                http.get(f"/health?{query}")
            http.post(f"/api/projects?token={pat}", json={"name": "x"})
        # Websockets: `?token=` (documented), the auth frame, and refusals.
        assert asyncio.run(_ws_session(f"{ws_base}/ws?token={token}"))[0] == "ready"
        assert asyncio.run(_ws_session(f"{ws_base}/ws?token={pat}"))[0] == "ready"
        assert asyncio.run(_ws_session(f"{ws_base}/ws?token={service_key}"))[0] == "ready"
        assert asyncio.run(_ws_session(f"{ws_base}/ws", auth_frame=pat))[0] == "ready"
        assert asyncio.run(_ws_session(f"{ws_base}/ws?token={forged}"))[1] == 4401
        assert asyncio.run(_ws_session(f"{ws_base}/ws?token={revoked['token']}"))[1] == 4401
        assert asyncio.run(_ws_session(f"{ws_base}/ws", auth_frame=forged))[1] == 4401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
    logged = out.read_text(errors="replace") + err.read_text(errors="replace")
    leaks = {
        name: [line for line in logged.splitlines() if value in line][:3]
        for name, value in used.items()
        if value in logged
    }
    assert leaks == {}
    # The log is not empty: the requests above are in it, with their credentials redacted.
    assert "/ws?token=[redacted]" in logged and "GET /api/projects" in logged, logged[-3000:]


def test_redaction_keeps_the_shape_of_a_log_line() -> None:
    jwt_like = jwt.encode({"sub": "x"}, "s" * 32, algorithm="HS256")
    line = f'127.0.0.1:5 - "GET /ws?limit=2&Access_Token={jwt_like}&x=1 HTTP/1.1" 101'
    assert (
        redact.redact(line)
        == '127.0.0.1:5 - "GET /ws?limit=2&Access_Token=[redacted]&x=1 HTTP/1.1" 101'
    )
    assert (
        redact.redact("/a?%74oken=abc&apikey=zz&key=k&q=monkey")
        == "/a?%74oken=[redacted]&apikey=[redacted]&key=[redacted]&q=monkey"
    )
    assert (
        redact.redact("Authorization: Bearer abcdefghijk12345")
        == "Authorization: Bearer [redacted]"
    )
    assert (
        redact.redact(f"saw {jwt_like} and drk_abcdefghijklmnopqrstu")
        == "saw [redacted] and [redacted]"
    )
    assert redact.redact("plain words, no secret") == "plain words, no secret"
    assert (
        redact.redact('< TEXT \'{"type":"auth","token":"svc-key-1"}\' [37 bytes]')
        == '< TEXT \'{"type":"auth","token":"[redacted]"}\' [37 bytes]'
    )
    assert (
        redact.redact("{'password': 'hunter2', 'user': 'x'}")
        == "{'password': '[redacted]', 'user': 'x'}"
    )
    assert (
        redact.redact("cannot reach postgresql://app:s3cr%40t@db:5432/studio?host=x")
        == "cannot reach postgresql://app:[redacted]@db:5432/studio?host=x"
    )
    assert (
        redact.redact("host=db user=app password=hunter2 dbname=x")
        == "host=db user=app password=[redacted] dbname=x"
    )
    assert (
        redact.redact("see http://example.com:8080/a and 127.0.0.1:5")
        == "see http://example.com:8080/a and 127.0.0.1:5"
    )
    # Records keep their argument tuple (uvicorn's access formatter unpacks it).
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/ws?token=secret-value", "1.1", 101),
        None,
    )
    redact.redact_record(record)
    assert record.args == ("127.0.0.1:5", "GET", "/ws?token=[redacted]", "1.1", 101)
    try:
        raise ValueError("bad token drk_abcdefghijklmnopqrstu")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    redact.redact_record(failed)
    text = logging.Formatter().format(failed)
    assert "drk_abcdefghijklmnopqrstu" not in text and "[redacted]" in text
