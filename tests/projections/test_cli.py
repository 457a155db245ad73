"""The `projections` command group: status, rebuild with a progress bar, dead letters, retry."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from projections.cli import Context, register
from tests.projections.conftest import catch_up

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cli(app, database, schema) -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def main() -> None:
        """darkroom"""

    register(root, lambda: Context(app, database.conninfo, schema))
    return root


def test_status_lists_every_view_with_its_lag(cli, app, database, schema, project_id):
    catch_up(app, database, schema)
    app.create_generation(project_id, None, "late.png")  # not projected yet
    result = CliRunner().invoke(cli, ["projections", "status"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for view in ("gallery", "shots", "variants", "tasks", "credits", "projects"):
        assert view in result.output


def test_rebuild_switches_the_view_to_a_new_version(cli, app, database, schema, conn):
    catch_up(app, database, schema)
    result = CliRunner().invoke(cli, ["projections", "rebuild", "variants"])
    assert result.exit_code == 0, result.output
    assert "variants now serves version" in result.output
    assert CliRunner().invoke(cli, ["projections", "rebuild", "nope"]).exit_code != 0


def test_dead_letters_and_retry_run_without_a_live_runner(cli, app, database, schema):
    catch_up(app, database, schema)
    assert CliRunner().invoke(cli, ["projections", "dead-letters"]).exit_code == 0
    result = CliRunner().invoke(cli, ["projections", "retry", "gallery"])
    assert result.exit_code == 0, result.output
    assert "0 retried" in result.output
