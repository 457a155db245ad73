"""One settings tree: each variable defined once, documented in a generated table, and
the lower layers' containers built from it (no environment read below `darkroom/`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from darkroom.limits import ServerLimits
from darkroom.settings import (
    TABLE_BEGIN,
    TABLE_END,
    Settings,
    dispatcher_config,
    hub_settings,
    markdown,
    server_limits,
    variables,
)
from inference.dispatcher import DispatcherConfig
from realtime.hub import HubSettings

ROOT = Path(__file__).resolve().parents[2]
ENV_READ = re.compile(r"os\.environ\b|getenv\(")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in variables():
        monkeypatch.delenv(variable.name, raising=False)
    return monkeypatch


def test_the_table_in_the_operations_guide_is_the_generated_one() -> None:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    committed = text[text.index(TABLE_BEGIN) + len(TABLE_BEGIN) : text.index(TABLE_END)]
    assert committed.strip() == markdown().strip(), (
        "docs/OPERATIONS.md's settings table is stale: paste `python -m darkroom.settings "
        "--markdown` between its markers"
    )


def test_the_module_prints_the_table_and_refuses_other_arguments() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "darkroom.settings", "--markdown"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert printed.stdout == markdown()
    refused = subprocess.run(
        [sys.executable, "-m", "darkroom.settings"], capture_output=True, text=True, cwd=ROOT
    )
    assert refused.returncode == 2 and "--markdown" in refused.stderr


def test_each_variable_is_defined_once_with_a_description_and_a_reader() -> None:
    found = list(variables())
    names = [v.name for v in found]
    assert len(names) == len(set(names)) > 50
    assert all(v.description and v.role for v in found)
    assert {"DATABASE_URL", "DARKROOM_WS_POLL_S", "DARKROOM_INFERENCE"} <= set(names)


def test_nothing_below_the_composition_root_reads_the_environment_for_a_setting() -> None:
    names = {v.name for v in variables()}
    readers = []
    for package in ("domain", "projections", "realtime", "inference"):
        for source in (ROOT / package).rglob("*.py"):
            text = source.read_text()
            if ENV_READ.search(text) and any(f'"{name}"' in text for name in names):
                readers.append(str(source.relative_to(ROOT)))
    assert readers == []


def test_with_no_variable_set_the_containers_get_their_own_defaults(
    clean_env: pytest.MonkeyPatch,
) -> None:
    settings = Settings()
    assert hub_settings(settings) == HubSettings()
    assert server_limits(settings) == ServerLimits()
    assert dispatcher_config(settings) == DispatcherConfig()


def test_a_variable_reaches_the_container_that_uses_it(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DARKROOM_WS_POLL_S", "0.05")
    clean_env.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    clean_env.setenv("DARKROOM_HEADER_TIMEOUT_S", "2.5")
    clean_env.setenv("DARKROOM_RUN_TYPES", "api, gpu ,")
    settings = Settings()
    assert hub_settings(settings).poll_s == 0.05
    assert hub_settings(settings).redis_url == "redis://127.0.0.1:1/0"
    assert server_limits(settings).header_timeout_s == 2.5
    assert dispatcher_config(settings).run_types == ("api", "gpu")
