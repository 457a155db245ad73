"""The long schemathesis run: every check and the stateful phase against a real server.

Starts a server (the tests' harness: `darkroom serve`'s app on the embedded PostgreSQL,
a fresh schema, the task rate limit lifted), then runs `st run --checks all` for each
of three callers: the service key acting for a user (service and worker routes
included), a user's JWT, and two users as peers (schemathesis reads what one made as
the other: `object_level_authorization`); per caller the examples, coverage and fuzzing phases,
then the stateful phase on its own time budget. Prints requests, findings, stateful links
covered and duration per run (docs/BENCHMARKS.md).

    python bench/api_fuzz.py [--seconds 300] [--stateful-seconds 240] [--examples 20]
                             [--workers 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import create_schema, drop_schema, resolve
from realtime.auth import issue_jwt
from tests.realtime.api_harness import JWT_SECRET, SERVICE_KEY, start_server, stop_server
from tests.realtime.fuzz_run import GENERATED, STATEFUL, run_schemathesis

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--seconds", type=int, default=300, help="per credential, examples + coverage + fuzzing"
    )
    parser.add_argument(
        "--stateful-seconds", type=int, default=240, help="per credential, the stateful phase"
    )
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="schemathesis workers (two "
        "can trip CPython 3.11's ast.parse inside hypothesis: docs/API.md)",
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    database = resolve(None, ROOT / ".darkroom" / "test-pg")
    schema = f"bench_fuzz_{uuid.uuid4().hex[:6]}"
    create_schema(database, schema)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(
            database, schema, Path(tmp) / "data", DARKROOM_TASK_RATE_LIMIT="1000000"
        )
        try:
            user = str(uuid.uuid4())
            peers = {
                name: issue_jwt(JWT_SECRET, str(uuid.uuid4()), ttl_s=4 * 3600)
                for name in ("alice", "bob")
            }
            for name, headers, identities in (
                (
                    "service key acting for a user",
                    {"Authorization": f"Bearer {SERVICE_KEY}", "X-Darkroom-User": user},
                    None,
                ),
                (
                    "a user's JWT",
                    {"Authorization": "Bearer " + issue_jwt(JWT_SECRET, user, ttl_s=4 * 3600)},
                    None,
                ),
                ("two users as peers (object-level authorization)", {}, peers),
            ):
                for phases, seconds in (
                    (GENERATED, args.seconds),
                    (STATEFUL, args.stateful_seconds),
                ):
                    started = time.monotonic()
                    result = run_schemathesis(
                        server.base_url,
                        headers,
                        phases=phases,
                        examples=args.examples,
                        max_time=seconds,
                        workers=args.workers,
                        report_dir=Path(tmp) / f"report{len(runs)}",
                        identities=identities,
                    )
                    runs.append(
                        {
                            "as": name,
                            "phases": phases,
                            "requests": result.requests,
                            "findings": result.findings,
                            "exit_code": result.exit_code,
                            "links_covered": result.links_covered,
                            "links_total": result.links_total,
                            "seconds": round(time.monotonic() - started, 1),
                        }
                    )
                    print(json.dumps(runs[-1]), flush=True)
                    if result.findings or result.exit_code:
                        print(result.output[-20000:], flush=True)
        finally:
            stop_server(server)
            drop_schema(database, schema)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}, "
        f"python {platform.python_version()}",
        "runs": runs,
        "requests": sum(r["requests"] for r in runs),
        "findings": sum(r["findings"] for r in runs),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
