"""Change-log retention: pruning moves the oldest retained position forward."""

from __future__ import annotations

from datetime import timedelta

import pytest

from projections.changelog import changes_since, oldest_retained_position, prune
from projections.projects import project_row
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(60)


def test_pruning_drops_old_changes_and_tells_resuming_clients_where_the_log_starts(
        app, database, schema, conn, project_id):
    app.create_generation(project_id, None, "a.png")
    catch_up(app, database, schema)
    head = app.head_position()
    assert prune(conn, timedelta(days=7)) == 0
    assert oldest_retained_position(conn) == 1

    assert prune(conn, timedelta(0)) > 0
    assert oldest_retained_position(conn) == head + 1
    assert changes_since(conn, [f"project:{project_id}"], 0) == []

    later = app.create_generation(project_id, None, "b.png")
    catch_up(app, database, schema)
    rows = changes_since(conn, [f"project:{project_id}"], head)
    assert rows and all(r["position"] > head for r in rows)
    assert rows[-1]["position"] == later["position"]


def test_changes_already_past_retention_are_not_written(app, database, schema, conn):
    project = app.create_project("old-owner", "old")["project_id"]
    catch_up(app, database, schema, retention=timedelta(0))  # everything is "old"
    assert changes_since(conn, [f"project:{project}"], 0) == []
    assert project_row(conn, project) is not None
