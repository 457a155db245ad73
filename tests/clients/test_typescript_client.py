"""The TypeScript client (`clients/typescript`, npm `@darkroom/client`) against a real server.

A `darkroom serve` process (127.0.0.1, fresh schema, `DARKROOM_INFERENCE=off`) is started
here; then `npm test` builds the client and runs its Node test runner tests with
`DARKROOM_URL` and the server's JWT secret (REST and typed errors, snapshot then changes,
5 killed connections while changes are written, re-authentication, unsubscribe/close).
`npm run gen -- --check` regenerates the types from the served `/openapi.json` and fails
when `src/openapi.ts` differs. Needs `npm ci` in clients/typescript first (.ci/run does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from darkroom.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import history_http

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def served(
    database: Database, schema: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[history_http.Served]:
    assert shutil.which("npm"), "Node.js and npm are needed for the TypeScript client's tests"
    assert (PACKAGE / "node_modules").is_dir(), "run `npm ci` in clients/typescript first"
    server = history_http.start_serve(
        database, schema, tmp_path_factory.mktemp("ts"), "ts", DARKROOM_JWT_SUB_ANY="n"
    )
    yield server
    server.stop()


def npm(*args: str, base: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DARKROOM_URL": base, "DARKROOM_JWT_SECRET": history_http.SECRET}
    done = subprocess.run(
        ["npm", *args], cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=240
    )
    print(done.stdout[-6000:], done.stderr[-3000:])  # shown when a test fails
    return done


def test_the_types_match_the_served_openapi_document(served: history_http.Served) -> None:
    done = npm("run", "gen", "--", "--url", served.base, "--check", base=served.base)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_clients_node_tests_pass_against_the_server(served: history_http.Served) -> None:
    done = npm("test", base=served.base)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "# fail 0" in done.stdout and "# skipped 0" in done.stdout
    assert served.errors_logged() == []
