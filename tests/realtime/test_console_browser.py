"""The console at /console in a real browser (Debian's Chromium driven by Playwright)
against a real server: live gallery, task board, cancel, time travel, a forbidden project.

Screenshots at 1280x800 and 375x812 are saved in artifacts/console/ (gitignored; the
paths are printed): look at them."""

from __future__ import annotations

import io
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image

from darkroom.database import Database
from darkroom.wiring import build_studio
from tests.realtime.api_harness import ROOT, SERVICE_KEY, Server, error_of, ok, server

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 375, "height": 812}}

__all__ = ["server"]  # the module's real server (tests/realtime/api_harness.py)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artefacts() -> Path:
    """artifacts/console/ (gitignored): kept after the run, unlike pytest's tmp dirs."""
    folder = ROOT / "artifacts" / "console"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


def token_of(client: httpx.Client) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, "PNG")
    return out.getvalue()


def a_project(client: httpx.Client, name: str = "Console") -> str:
    return str(ok(client.post("/api/projects", json={"name": name}), 201)["id"])


def an_upload(client: httpx.Client, colour: tuple[int, int, int]) -> str:
    return str(
        ok(client.post("/api/uploads", files={"file": ("a.png", png(colour), "image/png")}), 201)[
            "location"
        ]
    )


def a_generation(
    client: httpx.Client,
    project: str,
    name: str,
    colour: tuple[int, int, int] = (200, 40, 90),
    **more: str,
) -> str:
    return str(
        ok(
            client.post(
                "/api/generations",
                json={
                    "project_id": project,
                    "location": an_upload(client, colour),
                    "name": name,
                    **more,
                },
            ),
            201,
        )["id"]
    )


def a_task(client: httpx.Client, project: str) -> str:
    return str(
        ok(
            client.post(
                "/api/tasks",
                json={
                    "task_type": "image_upscale",
                    "project_id": project,
                    "params": {"image_url": "/m/source.png"},
                },
            ),
            201,
        )["task_id"]
    )


def open_console(
    browser: Any, server: Server, token: str, project: str, size: str = "desktop"
) -> Any:
    page = browser.new_page(viewport=SIZES[size])
    page.on("pageerror", lambda error: print(f"\nconsole page error: {error}"))
    page.on("console", lambda message: print(f"\nbrowser: {message.text}"))
    page.goto(f"{server.base_url}/console/#token={token}&project={project}")
    sync_api.expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    return page


def snap(page: Any, artefacts: Path, name: str) -> None:
    """A full-page screenshot among the test artefacts; its path is printed."""
    path = artefacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")


def row(page: Any, task_id: str) -> Any:
    return page.locator(f'[data-task-id="{task_id}"]')


def test_a_generation_created_through_the_api_appears_in_the_open_console_within_a_second(
    browser: Any, server: Server, artefacts: Path
) -> None:
    alice = server.user()
    project = a_project(alice)
    shot = ok(alice.post("/api/shots", json={"project_id": project, "name": "Opening"}), 201)["id"]
    first = a_generation(alice, project, "first light", (30, 90, 200), shot_id=shot)
    pages = {size: open_console(browser, server, token_of(alice), project, size) for size in SIZES}
    made = time.monotonic()
    generation = a_generation(alice, project, "second light")
    for page in pages.values():
        page.locator(f'[data-generation-id="{generation}"]').wait_for(timeout=1_000)
    seen = time.monotonic() - made
    print(f"\na new generation was in both open consoles {seen:.3f} s after its 201")
    assert seen < 1.0
    timeline = pages["desktop"].locator(f'[data-shot-id="{shot}"] .timeline li')
    sync_api.expect(timeline).to_have_count(1)
    assert timeline.get_attribute("data-generation-id") == first
    for size, page in pages.items():
        snap(page, artefacts, f"gallery-{size}")
        page.close()


def test_a_task_moves_across_the_board_to_complete_with_its_progress_shown(
    browser: Any, server: Server, database: Database, schema: str, artefacts: Path
) -> None:
    alice, worker = server.user(), server.service()
    project = a_project(alice)
    page = open_console(browser, server, token_of(alice), project)
    task = a_task(alice, project)
    sync_api.expect(row(page, task)).to_have_attribute("data-status", "Queued")
    worker_id = f"console-{uuid.uuid4().hex[:8]}"
    run_type = ok(alice.get(f"/api/tasks/{task}"))["run_type"]
    for _ in range(20):  # the oldest Queued task is claimed first: claim until it is ours
        claimed = worker.post(
            "/api/workers/claim", json={"worker_id": worker_id, "run_type": run_type}
        )
        assert claimed.status_code in (200, 204), claimed.text
        if claimed.status_code == 200 and claimed.json()["task_id"] == task:
            break
    sync_api.expect(row(page, task)).to_have_attribute("data-status", "In Progress")
    studio = build_studio(database, schema, pool_size=1)
    try:
        studio.report_progress(task, 1, 4, worker_id=worker_id)
    finally:
        studio.close()
    sync_api.expect(row(page, task).locator(".pct")).to_have_text("25%")
    snap(page, artefacts, "board-in-progress-desktop")
    ok(
        worker.post(
            f"/api/tasks/{task}/complete",
            json={"worker_id": worker_id, "output_location": an_upload(alice, (240, 200, 40))},
        )
    )
    complete = page.locator(f'[data-column="Complete"] [data-task-id="{task}"]')
    sync_api.expect(complete).to_have_attribute("data-status", "Complete")
    sync_api.expect(complete.locator(".pct")).to_have_text("100%")
    assert complete.locator("progress").evaluate("bar => bar.value") == 1
    snap(page, artefacts, "board-complete-desktop")
    page.close()


def test_a_queued_task_is_cancelled_from_the_board_by_keyboard(
    browser: Any, server: Server, artefacts: Path
) -> None:
    alice = server.user()
    project = a_project(alice)
    task = a_task(alice, project)
    page = open_console(browser, server, token_of(alice), project, "phone")
    cancel = row(page, task).get_by_role("button", name="Cancel")
    cancel.focus()
    page.keyboard.press("Enter")
    sync_api.expect(row(page, task)).to_have_attribute("data-status", "Cancelled")
    assert ok(alice.get(f"/api/tasks/{task}"))["status"] == "Cancelled"
    snap(page, artefacts, "board-cancelled-phone")
    page.close()


def test_time_travel_shows_a_generation_as_it_was_and_what_changed(
    browser: Any, server: Server, artefacts: Path
) -> None:
    alice = server.user()
    project = a_project(alice)
    generation = a_generation(alice, project, "before")
    ok(alice.patch(f"/api/generations/{generation}", json={"name": "after"}))
    page = open_console(browser, server, token_of(alice), project)
    item = page.locator(f'[data-generation-id="{generation}"]')
    sync_api.expect(item.locator(".name")).to_have_text("after")
    item.get_by_role("button", name="History of after").click()
    name = page.locator('#state [data-field="display_name"] td, #state [data-field="name"] td')
    sync_api.expect(name.first).to_have_text("after")
    page.get_by_label("As of version").fill("1")
    page.get_by_role("button", name="Show").click()
    sync_api.expect(page.locator("#state")).to_have_attribute("data-version", "1")
    sync_api.expect(name.first).to_have_text("before")
    versions = ok(alice.get(f"/api/history/{generation}"))["latest_version"]
    page.get_by_label("Compare version").fill("1")
    page.get_by_label("with").fill(str(versions))
    page.get_by_role("button", name="Compare").click()
    changed = page.locator("#state tr", has=page.locator("td.before", has_text="before"))
    sync_api.expect(changed.locator("td.after")).to_have_text("after")
    for size in SIZES:
        page.set_viewport_size(SIZES[size])
        snap(page, artefacts, f"history-{size}")
    page.close()


def test_a_pasted_token_signs_in_and_the_project_is_picked_from_the_list(
    browser: Any, server: Server
) -> None:
    alice = server.user()
    a_project(alice, "Other")
    project = a_project(alice, "Picked")
    generation = a_generation(alice, project, "in the picked project")
    page = browser.new_page(viewport=SIZES["phone"])
    page.goto(f"{server.base_url}/console/")
    page.get_by_label("Token").fill(token_of(alice))
    page.get_by_role("button", name="Sign in").press("Enter")
    page.get_by_label("Project", exact=True).select_option(label="Picked")
    page.locator(f'[data-generation-id="{generation}"]').wait_for(timeout=5_000)
    assert project in page.url  # the fragment names the open project: a link to it
    page.close()


def test_another_users_project_is_not_shown(browser: Any, server: Server) -> None:
    alice, bob = server.user(), server.user()
    project = a_project(alice, "Alice's secret")
    generation = a_generation(alice, project, "secret")
    page = bob_page = browser.new_page(viewport=SIZES["desktop"])
    page.goto(f"{server.base_url}/console/#token={token_of(bob)}&project={project}")
    sync_api.expect(page.locator("#error")).to_contain_text(
        "forbidden", ignore_case=True, timeout=15_000
    )
    assert page.locator("[data-generation-id]").count() == 0
    assert "Alice's secret" not in page.locator("#project").inner_text()
    error_of(bob.get(f"/api/history/{generation}"), 404)
    bob_page.close()


def test_history_over_http_is_the_owners_and_the_service_keys(server: Server) -> None:
    alice, bob, service = server.user(), server.user(), server.service()
    project = a_project(alice)
    generation = a_generation(alice, project, "one")
    ok(alice.patch(f"/api/generations/{generation}", json={"starred": True}))
    latest = ok(alice.get(f"/api/history/{generation}"))
    assert latest["kind"] == "Generation" and latest["version"] == latest["latest_version"]
    assert [e["version"] for e in latest["events"]] == list(range(1, latest["version"] + 1))
    first = ok(service.get(f"/api/history/{generation}", params={"version": 1}))
    assert first["state"]["starred"] is False and latest["state"]["starred"] is True
    error_of(bob.get(f"/api/history/{generation}"), 404)
    too_far = error_of(
        alice.get(f"/api/history/{generation}", params={"version": latest["version"] + 1}), 404
    )
    assert str(latest["version"] + 1) in too_far["message"]
    error_of(alice.get(f"/api/history/{generation}", params={"version": 0}), 422)


def test_a_long_history_comes_in_pages(server: Server) -> None:
    alice = server.user()
    generation = a_generation(alice, a_project(alice), "paged")
    for starred in (True, False, True, False):
        ok(alice.patch(f"/api/generations/{generation}", json={"starred": starred}))
    whole = ok(alice.get(f"/api/history/{generation}"))
    assert whole["next_after_version"] is None
    pages, after = [], 0
    while after is not None:
        page = ok(
            alice.get(f"/api/history/{generation}", params={"after_version": after, "limit": 2})
        )
        pages.append([e["version"] for e in page["events"]])
        after = page["next_after_version"]
    assert [v for p in pages for v in p] == [e["version"] for e in whole["events"]]
    assert all(len(p) == 2 for p in pages[:-1]) and len(pages) >= 3
    error_of(alice.get(f"/api/history/{generation}", params={"limit": 1001}), 422)


def test_the_service_key_sees_each_views_lag_and_rebuilds_one_with_a_progress_bar(
    browser: Any, server: Server, artefacts: Path
) -> None:
    alice = server.user()
    project = a_project(alice)
    generation = a_generation(alice, project, "seen by the operator")
    page = open_console(browser, server, SERVICE_KEY, project)
    page.locator(f'[data-generation-id="{generation}"]').wait_for()
    gallery = page.locator('[data-projection="gallery"]')
    sync_api.expect(gallery).to_be_visible()
    page.get_by_role("button", name="Rebuild gallery").click()
    bar = page.locator("#rebuild-progress")
    sync_api.expect(bar).to_have_attribute("data-state", "done", timeout=30_000)
    assert bar.evaluate("bar => bar.value") == 1
    sync_api.expect(page.locator("#rebuild-state")).to_contain_text("version")
    rebuilt = ok(server.service().get("/api/projections/gallery/rebuild"))
    assert rebuilt["state"] == "done" and rebuilt["done"] == rebuilt["total"] > 0
    assert ok(alice.get(f"/api/generations/{generation}"))["id"] == generation
    for size in SIZES:
        page.set_viewport_size(SIZES[size])
        snap(page, artefacts, f"operator-{size}")
    page.close()


def test_a_dead_letter_is_listed_and_retried_from_the_operator_panel(
    browser: Any, server: Server, database: Database, schema: str
) -> None:
    alice = server.user()
    project = a_project(alice)
    made = alice.post(
        "/api/generations", json={"project_id": project, "location": an_upload(alice, (9, 9, 9))}
    )
    at = int(ok(made, 201)["position"])
    with psycopg.connect(database.conninfo, autocommit=True) as conn:  # as a raise leaves it
        conn.execute(
            f'INSERT INTO "{schema}".projection_dead_letters (view, position, topic, '
            "error, traceback) VALUES ('gallery', %s, 'planted', "
            "'ValueError: planted', '')",
            (at,),
        )
    page = open_console(browser, server, SERVICE_KEY, project)
    letters = page.locator("#dead-letters")
    sync_api.expect(letters).to_contain_text(f"gallery at {at}")
    sync_api.expect(letters).to_contain_text("ValueError: planted")
    page.get_by_role("button", name="Retry gallery's dead letters").click()
    sync_api.expect(letters).to_have_text("none", timeout=15_000)
    assert ok(server.service().get("/api/projections"))["dead_letters"] == []
    page.close()


def test_projection_operations_are_the_service_keys_alone(server: Server) -> None:
    alice, service = server.user(), server.service()
    error_of(alice.get("/api/projections"), 403)
    error_of(alice.post("/api/projections/gallery/rebuild"), 403)
    report = ok(service.get("/api/projections"))
    views = {row["view"]: row for row in report["projections"]}
    assert {"gallery", "tasks", "credits"} <= set(views)
    assert all(row["lag_events"] >= 0 for row in views.values())
    missing = error_of(service.post("/api/projections/nothing/retry"), 404)
    assert "nothing" in missing["message"]
    assert ok(service.post("/api/projections/gallery/retry")) == {"requested": 0, "remaining": 0}


def test_the_consoles_copy_of_the_client_is_the_typescript_build() -> None:
    """realtime/console/static/darkroom-client.js is the committed build of
    clients/typescript, built here from its sources."""
    package = ROOT / "clients" / "typescript"
    assert (package / "node_modules").is_dir(), "run `npm ci` in clients/typescript first"
    done = subprocess.run(
        ["npm", "run", "build"], cwd=package, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    built = package / "dist" / "index.js"
    copy = ROOT / "realtime" / "console" / "static" / "darkroom-client.js"
    assert copy.read_text() == built.read_text(), (
        "the client changed: cp clients/typescript/dist/index.js "
        "realtime/console/static/darkroom-client.js"
    )
