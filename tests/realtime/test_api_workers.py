"""The pull-worker protocol, credits and uploads, through a real server.

This server grants no welcome credits (`DARKROOM_WELCOME_CREDITS=0`), so the
tests decide who can pay.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from darkroom.database import Database, drop_schema
from darkroom.wiring import build_studio
from domain.metadata import CommandMeta
from domain.worker import UNLISTED_AFTER
from realtime.app import create_app
from realtime.config import EdgeConfig
from tests.realtime.api_harness import Server, error_of, ok, position, start_server, stop_server


@pytest.fixture(scope="module")
def server(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(
        database, schema, tmp_path_factory.mktemp("workers"), DARKROOM_WELCOME_CREDITS="0"
    )
    yield running
    stop_server(running)


def user_with_credits(server: Server, amount: float = 5) -> tuple[httpx.Client, str]:
    client = server.user()
    user_id = client.headers["X-Test-User"]
    ok(
        server.service().post(
            "/api/credits/grant", json={"user_id": user_id, "amount": amount, "reason": "test"}
        ),
        201,
    )
    return client, user_id


def worker_of(server: Server, client: httpx.Client) -> httpx.Client:
    """A user's personal access token, with a worker id of its own (a worker id belongs
    to the credential that first uses it)."""
    token = ok(client.post("/api/tokens", json={"label": "worker"}), 201)["token"]
    worker = server.client(token)
    worker.headers["X-Test-Worker"] = f"w-{uuid.uuid4().hex[:8]}"
    return worker


def wid(worker: httpx.Client) -> str:
    return worker.headers.setdefault("X-Test-Worker", f"w-{uuid.uuid4().hex[:8]}")


def project_with_task(
    client: httpx.Client, task_type: str = "image_generation", params: dict[str, Any] | None = None
) -> tuple[str, str]:
    project = ok(client.post("/api/projects", json={"name": "Work"}), 201)["id"]
    task = ok(
        client.post(
            "/api/tasks",
            json={
                "task_type": task_type,
                "project_id": project,
                "params": params or {"prompt": "a fox"},
            },
        ),
        201,
    )["task_id"]
    return project, task


def claim(worker: httpx.Client, run_type: str = "api", within: float = 5.0) -> Any:
    """Poll like a worker: the claim queue is a view, a moment behind the write."""
    deadline = time.monotonic() + within
    while True:
        answer = worker.post(
            "/api/workers/claim", json={"worker_id": wid(worker), "run_type": run_type}
        )
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer
        assert answer.status_code == 204, answer.text
        time.sleep(0.05)


def a_claimed_task(server: Server) -> tuple[httpx.Client, str, httpx.Client, str]:
    """A user with credits, their own worker, and a task of theirs it has claimed."""
    alice, user_id = user_with_credits(server)
    worker = worker_of(server, alice)
    _, task = project_with_task(alice)
    assert ok(claim(worker))["task_id"] == task
    return alice, user_id, worker, task


def test_the_service_key_claims_a_queued_task_and_answers_204_when_none_is_left(
    server: Server,
) -> None:
    alice, _ = user_with_credits(server)
    project, task = project_with_task(alice)
    service = server.service()
    body = ok(claim(service))
    assert (body["task_id"], body["project_id"], body["task_type"]) == (
        task,
        project,
        "image_generation",
    )
    assert body["params"]["prompt"] == "a fox"
    assert (
        service.post(
            "/api/workers/claim", json={"worker_id": wid(service), "run_type": "api"}
        ).status_code
        == 204
    )
    done = service.post(f"/api/tasks/{task}/fail", json={"error_message": "gpu on fire"})
    ok(done)
    failed = ok(alice.get(f"/api/tasks/{task}?min_position={position(done)}"))
    assert (failed["status"], failed["error"]) == ("Failed", "gpu on fire")


def test_completing_a_task_creates_its_generation_and_charges_once(server: Server) -> None:
    alice, _ = user_with_credits(server, 5)
    worker = worker_of(server, alice)
    project, task = project_with_task(alice)
    assert ok(claim(worker))["task_id"] == task
    beat = ok(
        worker.post("/api/workers/heartbeat", json={"worker_id": wid(worker), "task_ids": [task]})
    )
    assert beat["stop"] == []
    done = worker.post(
        f"/api/tasks/{task}/complete",
        json={
            "worker_id": wid(worker),
            "output_location": "/media/out.png",
            "thumbnail_url": "/media/t.png",
        },
    )
    ok(done)
    seen = f"min_position={position(done)}"
    gallery = ok(alice.get(f"/api/generations?projectId={project}&{seen}"))["items"]
    assert [g["location"] for g in gallery] == ["/media/out.png"]
    credits = ok(alice.get(f"/api/credits?{seen}"))
    assert credits["balance"] == pytest.approx(5 - 0.039)
    assert [e["kind"] for e in credits["ledger"]] == ["spend", "grant"]
    again = error_of(
        worker.post(f"/api/tasks/{task}/complete", json={"output_location": "/media/out.png"}), 409
    )
    assert again["current_status"] == "Complete"
    assert ok(alice.get(f"/api/credits?{seen}"))["balance"] == credits["balance"]


@pytest.mark.parametrize(
    ("task_type", "run_type", "params", "runs_as"),
    [
        (
            "video_travel_segment",
            "gpu",
            {"start_image_url": "/media/a.png", "end_image_url": "/media/b.png"},
            "individual_travel_segment",
        ),
        (
            "edit_travel_kontext",
            "api",
            {"image_url": "/media/a.png", "prompt": "at night"},
            "edit_travel_kontext",
        ),
        (
            "edit_travel_flux",
            "api",
            {"image_url": "/media/a.png", "prompt": "in snow"},
            "edit_travel_flux",
        ),
    ],
)
def test_seed_000s_task_types_are_queued_claimed_and_completed_into_a_generation(
    server: Server, task_type: str, run_type: str, params: dict[str, Any], runs_as: str
) -> None:
    alice, _ = user_with_credits(server)
    worker = worker_of(server, alice)
    project, task = project_with_task(alice, task_type, params)
    claimed = ok(claim(worker, run_type))
    assert (claimed["task_id"], claimed["task_type"]) == (task, runs_as)
    done = worker.post(
        f"/api/tasks/{task}/complete",
        json={"worker_id": wid(worker), "output_location": f"/media/{task_type}.out"},
    )
    made = ok(done)["generation_id"]
    shown = ok(alice.get(f"/api/generations/{made}?min_position={position(done)}"))
    assert (shown["project_id"], shown["location"]) == (project, f"/media/{task_type}.out")


def test_a_failed_task_costs_nothing_and_a_refused_status_change_says_why(server: Server) -> None:
    alice, _ = user_with_credits(server, 2)
    worker = worker_of(server, alice)
    _, task = project_with_task(alice)
    refused = error_of(worker.patch(f"/api/tasks/{task}/status", json={"status": "Complete"}), 409)
    assert (refused["current_status"], refused["requested_status"]) == ("Queued", "Complete")
    assert refused["allowed_transitions"] == ["Cancelled", "Failed", "In Progress"]
    moved = worker.patch(
        f"/api/tasks/{task}/status", json={"status": "In Progress", "worker_id": "w9"}
    )
    ok(moved)
    failed = worker.patch(
        f"/api/tasks/{task}/status",
        json={"status": "Failed", "error_message": "oom", "worker_id": "w9"},
    )
    ok(failed)
    credits = ok(alice.get(f"/api/credits?min_position={position(failed)}"))
    assert credits["balance"] == 2 and [e["kind"] for e in credits["ledger"]] == ["grant"]


def test_a_user_without_credits_is_told_402_when_their_worker_claims(server: Server) -> None:
    broke = server.user()
    worker = worker_of(server, broke)
    _, task = project_with_task(broke)
    time.sleep(0.3)  # the claim queue has the task by now
    body = error_of(
        worker.post("/api/workers/claim", json={"worker_id": "w2", "run_type": "api"}), 402
    )
    assert body["code"] == "insufficient_credits"
    body = error_of(
        worker.patch(
            f"/api/tasks/{task}/status", json={"status": "In Progress", "worker_id": "w2"}
        ),
        402,
    )
    assert body["code"] == "insufficient_credits"


def test_a_users_worker_never_claims_or_finishes_another_users_task(server: Server) -> None:
    alice, _ = user_with_credits(server)
    bob, _ = user_with_credits(server)
    _, task = project_with_task(alice)
    bobs_worker = worker_of(server, bob)
    time.sleep(0.3)
    assert (
        bobs_worker.post(
            "/api/workers/claim", json={"worker_id": "wb", "run_type": "api"}
        ).status_code
        == 204
    )
    error_of(bobs_worker.post(f"/api/tasks/{task}/fail", json={"error_message": "x"}), 404)
    ok(alice.patch(f"/api/tasks/{task}/cancel"))


def test_a_worker_id_belongs_to_the_credential_that_first_used_it(server: Server) -> None:
    """The issue's case: user B heartbeat user A's worker (keeping it alive) and learnt
    from `stop` which tasks it held. Now every worker route answers B 404 for it."""
    alice, _ = user_with_credits(server)
    bob, _ = user_with_credits(server)
    alices_worker, bobs_worker = worker_of(server, alice), worker_of(server, bob)
    _, task = project_with_task(alice)
    assert ok(claim(alices_worker))["task_id"] == task
    taken = wid(alices_worker)
    _, bobs_task = project_with_task(bob)
    for intruder in (bobs_worker, server.service()):
        for method, path, body in [
            ("POST", "/api/workers/heartbeat", {"worker_id": taken, "task_ids": [task]}),
            ("POST", "/api/workers/claim", {"worker_id": taken, "run_type": "api"}),
            ("POST", "/api/workers/claim", {"worker_id": taken, "run_type": "gpu"}),
            (
                "POST",
                f"/api/tasks/{bobs_task}/complete",
                {"worker_id": taken, "output_location": "/media/x.png"},
            ),
            ("POST", f"/api/tasks/{bobs_task}/fail", {"worker_id": taken, "error_message": "x"}),
            ("POST", f"/api/tasks/{bobs_task}/release", {"worker_id": taken}),
            (
                "PATCH",
                f"/api/tasks/{bobs_task}/status",
                {"worker_id": taken, "status": "In Progress"},
            ),
        ]:
            refused = error_of(intruder.request(method, path, json=body), 404)
            assert refused["code"] == "not_found" and taken in refused["message"], (
                method,
                path,
                refused,
            )
    # The owner goes on; any of the owner's tokens is the owner.
    second_token = worker_of(server, alice)
    beat = ok(
        second_token.post(
            "/api/workers/heartbeat", json={"worker_id": taken, "task_ids": [task, bobs_task]}
        )
    )
    assert beat["stop"] == []  # bob's task is not alice's to hear about
    ok(
        alices_worker.post(
            f"/api/tasks/{task}/complete",
            json={"worker_id": taken, "output_location": "/media/mine.png"},
        )
    )


def test_a_heartbeat_tells_the_worker_to_drop_a_task_cancelled_under_it(server: Server) -> None:
    alice, _, worker, task = a_claimed_task(server)
    ok(alice.patch(f"/api/tasks/{task}/cancel"))
    beat = ok(
        worker.post("/api/workers/heartbeat", json={"worker_id": wid(worker), "task_ids": [task]})
    )
    assert beat["stop"] == [task]
    error_of(
        worker.post(
            f"/api/tasks/{task}/complete",
            json={"worker_id": wid(worker), "output_location": "/media/late.png"},
        ),
        409,
    )


def test_a_released_task_goes_back_to_the_queue_without_spending_an_attempt(server: Server) -> None:
    alice, _, worker, task = a_claimed_task(server)
    error_of(worker.post(f"/api/tasks/{task}/release", json={"worker_id": "not-me"}), 409)
    released = worker.post(
        f"/api/tasks/{task}/release", json={"worker_id": wid(worker), "reason": "shutting down"}
    )
    ok(released)
    back = ok(alice.get(f"/api/tasks/{task}?min_position={position(released)}"))
    assert (back["status"], back["attempts"], back["worker_id"]) == ("Queued", 0, None)
    refused = error_of(worker.post(f"/api/tasks/{task}/release", json={}), 409)
    assert refused["current_status"] == "Queued"
    bob, _ = user_with_credits(server)
    error_of(worker_of(server, bob).post(f"/api/tasks/{task}/release", json={}), 404)
    again = ok(claim(worker))
    assert again["task_id"] == task
    ok(
        worker.post(
            f"/api/tasks/{task}/complete",
            json={"worker_id": wid(worker), "output_location": "/media/after-release.png"},
        )
    )


def test_a_heartbeat_listing_every_held_task_requeues_a_claim_whose_answer_was_lost(
    server: Server, database: Database, schema: str
) -> None:
    """The claim was saved a minute ago (here by the studio itself, as the server would
    have) but its answer never reached the worker: a heartbeat that says it lists every
    task (`exhaustive`) puts it back in the queue; one that does not, as before, keeps it."""
    alice, _ = user_with_credits(server)
    service = server.service()
    tasks = [project_with_task(alice)[1] for _ in range(2)]
    studio = build_studio(database, schema, pool_size=1)
    try:
        long_ago = datetime.now(UTC) - UNLISTED_AFTER - timedelta(seconds=1)
        for task in tasks:
            studio.claim_task(
                task, wid(service), now=long_ago, meta=CommandMeta(credential="service")
            )
    finally:
        studio.close()
    kept, requeued = tasks
    beat = {"worker_id": wid(service), "task_ids": [kept]}
    ok(service.post("/api/workers/heartbeat", json=beat))
    assert ok(alice.get(f"/api/tasks/{requeued}"))["status"] == "In Progress"
    answer = service.post("/api/workers/heartbeat", json={**beat, "exhaustive": True})
    assert ok(answer) == {"worker_id": wid(service), "stop": [], "position": position(answer)}
    back = ok(alice.get(f"/api/tasks/{requeued}?min_position={position(answer)}"))
    assert (back["status"], back["attempts"]) == ("Queued", 1)
    assert ok(alice.get(f"/api/tasks/{kept}"))["status"] == "In Progress"


def test_completing_an_upscale_adds_a_variant_to_its_source(server: Server) -> None:
    alice, _ = user_with_credits(server)
    worker = worker_of(server, alice)
    project = ok(alice.post("/api/projects", json={"name": "Up"}), 201)["id"]
    source = ok(
        alice.post(
            "/api/generations", json={"project_id": project, "location": "/media/small.png"}
        ),
        201,
    )
    task = ok(
        alice.post(
            "/api/tasks",
            json={
                "family": "image_upscale",
                "project_id": project,
                "input": {
                    "image_url": "/media/small.png",
                    "based_on": source["id"],
                    "is_primary": True,
                },
            },
        ),
        201,
    )["task_id"]
    assert ok(claim(worker))["task_id"] == task
    done = worker.post(f"/api/tasks/{task}/complete", json={"output_location": "/media/big.png"})
    ok(done)
    variants = ok(
        alice.get(f"/api/generations/{source['id']}/variants?min_position={position(done)}")
    )
    assert [(v["variant_type"], v["location"]) for v in variants] == [
        ("original", "/media/small.png"),
        ("upscaled", "/media/big.png"),
    ]


def listed(server: Server, worker_id: str, query: str = "") -> dict[str, Any]:
    rows = ok(server.service().get(f"/api/workers{query}"))
    return next(r for r in rows if r["worker_id"] == worker_id)  # type: ignore[no-any-return]


def test_the_workers_listing_shows_liveness_held_tasks_and_what_heartbeats_report(
    server: Server,
) -> None:
    _, user_id, worker, task = a_claimed_task(server)
    ok(
        worker.post(
            "/api/workers/heartbeat",
            json={
                "worker_id": wid(worker),
                "task_ids": [task],
                "status": "busy",
                "current_model": "tiny-sd",
                "vram_used_mb": 3100,
                "vram_total_mb": 24_000,
            },
        )
    )
    row = listed(server, wid(worker))
    assert (row["liveness"], row["owner"], [h["task_id"] for h in row["held_tasks"]]) == (
        "alive",
        f"user:{user_id}",
        [task],
    )
    assert (row["status"], row["current_model"], row["vram_used_mb"], row["vram_total_mb"]) == (
        "busy",
        "tiny-sd",
        3100,
        24_000,
    )
    # A beat that leaves fields out keeps them; a new status is written at once (VRAM
    # alone waits for the pulse's next write, at most 5 s later).
    ok(worker.post("/api/workers/heartbeat", json={"worker_id": wid(worker), "status": "idle"}))
    row = listed(server, wid(worker))
    assert (row["status"], row["current_model"], row["vram_used_mb"]) == ("idle", "tiny-sd", 3100)
    time.sleep(0.3)
    assert listed(server, wid(worker), "?timeout_s=0.2")["liveness"] == "silent"
    error_of(server.service().get("/api/workers?timeout_s=0"), 422)


def test_heartbeat_reports_are_validated_and_stay_out_of_the_event_log(server: Server) -> None:
    worker = server.service()
    name = f"w-{uuid.uuid4().hex[:8]}"
    ok(worker.post("/api/workers/heartbeat", json={"worker_id": name}))
    head = ok(worker.get("/health"))["head_position"]
    for status in ("loading", "busy", "idle"):
        ok(
            worker.post(
                "/api/workers/heartbeat",
                json={"worker_id": name, "status": status, "current_model": status},
            )
        )
    assert ok(worker.get("/health"))["head_position"] == head
    assert listed(server, name)["current_model"] == "idle"
    error_of(
        worker.post("/api/workers/heartbeat", json={"worker_id": name, "vram_used_mb": -1}), 422
    )


def test_a_jwt_cannot_use_the_worker_routes(server: Server) -> None:
    alice, _ = user_with_credits(server)
    body = error_of(alice.post("/api/workers/claim", json={"worker_id": "w"}), 403)
    assert body["code"] == "worker_credentials_required"


def test_credits_start_at_the_welcome_grant_and_grow_by_grants(server: Server) -> None:
    alice = server.user()
    assert ok(alice.get("/api/credits")) | {"ledger": []} == {
        "user_id": alice.headers["X-Test-User"],
        "balance": 0,
        "ledger": [],
    }
    granted = server.service().post(
        "/api/credits/grant",
        json={"user_id": alice.headers["X-Test-User"], "amount": 2.5, "reason": "support"},
    )
    ok(granted, 201)
    credits = ok(alice.get(f"/api/credits?min_position={position(granted)}"))
    assert credits["balance"] == 2.5 and credits["ledger"][0]["reason"] == "support"
    error_of(
        server.service().post(
            "/api/credits/grant", json={"user_id": "x", "amount": -1, "reason": "theft"}
        ),
        422,
    )


def test_an_upload_is_stored_and_served_under_media(server: Server) -> None:
    worker = server.service()
    picture = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(picture, "PNG")
    body = ok(
        worker.post("/api/uploads", files={"file": ("out.png", picture.getvalue(), "image/png")}),
        201,
    )
    location = body["location"].split("?")[0]  # answered as a signed URL (test_api_media)
    assert location.startswith("/media/uploads/") and location.endswith(".png")
    assert worker.get(body["location"]).content == picture.getvalue()
    assert error_of(worker.post("/api/uploads", data={"nofile": "x"}), 400)["code"] in (
        "file_required",
        "multipart_required",
    )
    assert server.client().get("/media/uploads/nothing.png").status_code == 403  # unsigned


def test_an_upload_over_200_mib_is_refused_with_413_before_it_is_read(server: Server) -> None:
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /api/uploads HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer test-service-key\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {200 * 1024 * 1024 + 1}\r\n\r\n".encode()
            + b"--b\r\n"
        )
        answer = ""
        while "}" not in answer:
            chunk = conn.recv(65536).decode()
            if not chunk:
                break
            answer += chunk
    assert answer.startswith("HTTP/1.1 413") and "body_too_large" in answer


def test_a_worker_that_stops_heartbeating_loses_its_task_until_the_third_attempt_fails(
    database: Database, schema: str, tmp_path: Path
) -> None:
    sweeping = start_server(
        database,
        f"{schema}_sweep",
        tmp_path,
        DARKROOM_WORKER_TIMEOUT_S="0.5",
        DARKROOM_SWEEP_INTERVAL_S="0.2",
    )
    try:
        alice, _ = user_with_credits(sweeping)
        worker = worker_of(sweeping, alice)
        _, task = project_with_task(alice)
        seen = []
        for _attempt in range(3):
            claimed = claim(worker)
            assert ok(claimed)["task_id"] == task
            deadline = time.monotonic() + 10
            path = f"/api/tasks/{task}?min_position={position(claimed)}"
            while (now := ok(alice.get(path)))["status"] == "In Progress":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            seen.append((now["status"], now["attempts"]))
        assert seen == [("Queued", 1), ("Queued", 2), ("Failed", 3)]
    finally:
        stop_server(sweeping)
        drop_schema(database, f"{schema}_sweep")


def test_the_sweeper_runs_on_the_command_threads_the_requests_share(
    database: Database, schema: str, tmp_path: Path
) -> None:
    """So the store's pool sees at most `command_threads` threads at once, sweeps included."""
    threads: list[str] = []

    def studio() -> Any:
        made = build_studio(database, schema, pool_size=2)
        sweep = made.sweep_lost_workers

        def sweep_here(**kw: Any) -> Any:
            threads.append(threading.current_thread().name)
            return sweep(**kw)

        made.sweep_lost_workers = sweep_here  # type: ignore[method-assign]
        return made

    config = EdgeConfig(
        conninfo=database.conninfo,
        schema=schema,
        build_studio=studio,
        media_dir=tmp_path / "media",
        command_threads=2,
        sweep_interval_s=0.05,
    )
    app = create_app(config)

    async def serve_a_moment() -> None:
        async with app.router.lifespan_context(app):
            while len(threads) < 3:
                await asyncio.sleep(0.02)

    asyncio.run(asyncio.wait_for(serve_a_moment(), 30))
    assert {t.rsplit("_", 1)[0] for t in threads} == {"command"}, threads
