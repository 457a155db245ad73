"""Shared fixtures: one PostgreSQL per test session, a fresh schema per test module.

With `DATABASE_URL` set the tests use that server; otherwise an embedded
pgserver in `.darkroom/test-pg` (reused across runs, stopped at exit).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from darkroom.database import Database, create_schema, drop_schema, resolve
from tests import logcheck

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    # Every log line of the run is searched for every credential the tests used.
    if not config.pluginmanager.is_registered(logcheck):
        config.pluginmanager.register(logcheck, "logcheck")


@pytest.fixture(scope="session")
def database() -> Database:
    root = Path(__file__).resolve().parent.parent
    return resolve(os.environ.get("DATABASE_URL"), root / ".darkroom" / "test-pg")


@pytest.fixture(scope="module")
def schema(database: Database, request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema of its own for each test module, dropped afterwards."""
    base = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.lower())[-40:]
    name = f"t_{base}_{uuid.uuid4().hex[:6]}"
    create_schema(database, name)
    yield name
    drop_schema(database, name)
