"""A batch that PostgreSQL refuses does not stop the runner: the event whose own
write fails is dead-lettered for every view, the others are written."""

from __future__ import annotations

import pytest

from projections.engine import ops
from projections.views.gallery import GalleryView
from projections.views.projects import ProjectsView, project_row
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(60)


class CheckedProjects(ProjectsView):
    """A view whose table refuses one value: its writes fail inside the batch."""

    def ddl(self, names: dict[str, str]) -> list[str]:
        t = names["projects"]
        return [
            *super().ddl(names),
            f"ALTER TABLE \"{t}\" ADD CONSTRAINT no_poison CHECK (name <> 'poison')",
        ]


def test_an_event_whose_rows_cannot_be_written_is_dead_lettered_and_the_rest_goes_on(
    app, database, schema, conn
):
    before = app.create_project("p-owner", "fine before")["project_id"]
    poison = app.create_project("p-owner", "poison")
    after = app.create_project("p-owner", "fine after")["project_id"]
    catch_up(app, database, schema, views=[CheckedProjects(), GalleryView()])
    letters = [r for r in ops.dead_letters(conn, "projects") if r["position"] == poison["position"]]
    assert letters and "no_poison" in letters[0]["error"]
    assert project_row(conn, before) is not None and project_row(conn, after) is not None
    assert project_row(conn, poison["project_id"]) is None
