from __future__ import annotations

from collections.abc import Iterator

import pytest

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.studio import Studio


@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=4)
    yield app
    app.close()
