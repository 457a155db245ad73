"""Snapshot pruning keeps what loads and time travel start from, nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from darkroom.database import Database
from darkroom.housekeeping import KEEP_ONE_PER
from darkroom.wiring import build_studio
from domain.studio import Studio


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


def test_an_aggregate_keeps_its_newest_snapshot_and_one_per_thousand_versions(
    database: Database, schema: str, studio: Studio
) -> None:
    project = studio.create_project("alice", "Long")["project_id"]
    ident = UUID(studio.create_generation(project, "alice", "/media/l.png")["generation_id"])
    generation: Any = studio.repository.get(ident)
    while generation.version < 2 * KEEP_ONE_PER + 600:
        for _ in range(10):  # ten events a save: a snapshot every five saves
            generation.star(not generation.starred)
        studio.save(generation)
        studio.flush_snapshots()
    versions = [row["version"] for row in studio.stored_snapshots(ident)]
    assert versions[-1] == generation.version
    assert len(versions) == 3
    assert [v // KEEP_ONE_PER for v in versions] == [0, 1, 2]
    plain = build_studio(database, schema, pool_size=1, snapshots=False, cache_size=0)
    try:
        for version in (KEEP_ONE_PER - 7, KEEP_ONE_PER + 450, generation.version - 3):
            assert vars(studio.aggregate_at(ident, version=version)) == vars(
                plain.aggregate_at(ident, version=version)
            )
    finally:
        plain.close()
