"""The runner: batches, positions, dead letters, read-your-writes, the change log, locks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from domain.generation import Generation
from domain.services.base import now
from projections import all_views
from projections.changelog import changes_since, oldest_retained_position
from projections.engine import ops
from projections.engine.runner import Runner
from projections.errors import LockNotAcquiredError, ProjectionTimeoutError
from projections.reading import snapshot, wait_for_position
from projections.views.gallery import GalleryView, gallery_page, generation_row
from projections.views.variants import VariantsView
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def live(app, database, schema) -> Iterator[Runner]:
    """A managed runner following the log in a thread."""
    runner = Runner(app, database.conninfo, schema, all_views())
    thread = threading.Thread(target=runner.run_forever, daemon=True)
    thread.start()
    yield runner
    runner.stop()
    thread.join(10)
    runner.close()


def test_many_events_are_written_per_transaction(app, database, schema, project_id):
    pid = app.project(project_id).id
    made = []
    for i in range(300):
        g = Generation.start(pid, "image", now(), name=f"g{i}")
        g.add_variant(uuid4(), f"{i}.png", now(), make_primary=True)
        made.append(g)
    app.save(*made)
    runner = catch_up(app, database, schema, batch_size=500)
    assert runner.events_processed >= 600
    assert runner.events_processed / runner.batches >= 100


def test_events_no_view_wants_still_advance_every_position(app, database, schema, conn):
    app.ensure_user("someone")  # user events: no view reads them
    head = app.head_position()
    catch_up(app, database, schema)
    positions = conn.execute("SELECT view, position FROM projection_tracking").fetchall()
    assert positions and all(row["position"] == head for row in positions)


class FailingGallery(GalleryView):
    def on_generation(self, event: Any, g: Generation, captured: Any, ctx: Any) -> None:
        if g.name == "boom":
            raise RuntimeError("cannot render boom")
        super().on_generation(event, g, captured, ctx)


def test_a_failing_handler_sends_its_event_to_dead_letters_and_the_runner_goes_on(
    app, database, schema, conn, project_id
):
    boom = app.create_generation(project_id, None, "x.png", name="boom")["generation_id"]
    after = app.create_generation(project_id, None, "y.png")["generation_id"]
    catch_up(app, database, schema, views=[FailingGallery(), VariantsView()])

    letters = ops.dead_letters(conn, "gallery")
    assert {row["topic"] for row in letters} == {
        "darkroom.generation.created",
        "darkroom.generation.variant_added",
    }
    assert "cannot render boom" in letters[0]["error"]
    assert generation_row(conn, boom) is None and generation_row(conn, after) is not None

    result = ops.retry(app, database.conninfo, schema, "gallery")  # the fixed code
    assert result == {"requested": 2, "remaining": 0}
    assert generation_row(conn, boom)["location"] == "x.png"


def test_a_query_can_wait_until_the_views_reached_a_commands_position(
    app, database, schema, conn, project_id, live
):
    made = app.create_generation(project_id, None, "w.png")
    wait_for_position(conn, made["position"], timeout=10)
    assert generation_row(conn, made["generation_id"]) is not None
    with pytest.raises(ProjectionTimeoutError):
        wait_for_position(conn, made["position"] + 10_000, timeout=0.2, views="gallery")


def test_the_change_log_has_one_row_per_topic_and_event_in_increasing_order(
    app, database, schema, conn, project_id
):
    g = app.create_generation(project_id, None, "c.png")["generation_id"]
    v = app.add_variant(g, None, "c.up.png", variant_type="upscaled", make_primary=True)
    app.star_generation(g, None, True)
    catch_up(app, database, schema)

    rows = changes_since(conn, [f"generation:{g}", f"project:{project_id}"], 0)
    for topic in {r["topic"] for r in rows}:
        positions = [r["position"] for r in rows if r["topic"] == topic]
        assert positions == sorted(set(positions))
    promoted = [
        r for r in rows if r["topic"] == f"generation:{g}" and r["position"] == v["position"]
    ]
    assert len(promoted) == 1 and promoted[0]["kind"] == "batch"
    kinds = [c["kind"] for c in promoted[0]["payload"]["changes"]]
    assert kinds.count("variant.upserted") == 2 and "generation.upserted" in kinds
    last = [r for r in rows if r["topic"] == f"project:{project_id}"][-1]
    assert last["payload"] == generation_row(conn, g)
    assert oldest_retained_position(conn) == 1


def test_a_snapshot_reads_views_and_their_position_atomically(
    app, database, schema, conn, project_id
):
    app.create_generation(project_id, None, "s.png")
    catch_up(app, database, schema)
    with snapshot(conn, ["gallery"]) as positions:
        page = gallery_page(conn, project_id)
    assert positions["gallery"] == app.head_position()
    assert max(r["log_position"] for r in page["items"]) <= positions["gallery"]


def test_a_second_runner_waits_as_a_standby_until_the_first_one_stops(app, database, schema):
    first = Runner(app, database.conninfo, schema, all_views())
    second = Runner(app, database.conninfo, schema, all_views())
    try:
        first.acquire()
        with pytest.raises(LockNotAcquiredError):
            second.acquire(wait=False)
        first.close()
        second.acquire(wait=False)
    finally:
        first.close()
        second.close()


def test_a_nul_character_in_event_data_does_not_stop_the_runner(
    app, database, schema, conn, project_id
):
    g = Generation.start(app.project(project_id).id, "image", now(), name="a\x00b")
    g.add_variant(uuid4(), "n.png", now(), make_primary=True, params={"prompt": "nul \x00 here"})
    app.save(g)
    catch_up(app, database, schema)
    row = generation_row(conn, g.id)
    assert row["name"] == "a\ufffdb" and row["params"] == {"prompt": "nul \ufffd here"}
    payloads = changes_since(conn, [f"generation:{g.id}"], 0)
    assert "a\ufffdb" in json.dumps(payloads[-1]["payload"], ensure_ascii=False)


def test_a_standby_takes_over_when_the_active_runner_stops(app, database, schema, conn, project_id):
    first = Runner(app, database.conninfo, schema, all_views())
    second = Runner(app, database.conninfo, schema, all_views())
    threads = [threading.Thread(target=r.run_forever, daemon=True) for r in (first, second)]
    try:
        threads[0].start()
        made = app.create_generation(project_id, None, "one.png")
        wait_for_position(conn, made["position"], timeout=30)
        second.open()  # as the studio's lifespan does, before it owns the views
        threads[1].start()
        first.stop()
        threads[0].join(10)
        first.close()
        made = app.create_generation(project_id, None, "two.png")
        wait_for_position(conn, made["position"], timeout=30)
        assert generation_row(conn, made["generation_id"]) is not None
        assert second.events_processed > 0
    finally:
        for runner in (first, second):
            runner.stop()
        for thread in threads:
            thread.join(10)
        second.close()
