"""The serving process's memory is bounded by the aggregate cache's size.

    python bench/cache_memory.py [--cache 10000] [--aggregates 30000]

Stores `--aggregates` generations and tasks (half each, realistic params), then loads
every one once through a studio whose cache holds `--cache` aggregates, printing the
process's RSS every few thousand loads. Past the cache's size RSS should stop growing:
the LRU evicts one aggregate for each new one.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from darkroom.database import create_schema, drop_schema, resolve
from darkroom.wiring import build_studio
from domain.catalogue import resolve_default
from domain.generation import Generation
from domain.task import Task

PARAMS = {
    "prompt": "a lighthouse on a cliff at dusk, volumetric light, " * 8,
    "negative_prompt": "blurry, low quality",
    "seed": 1234,
    "steps": 30,
    "resolution": "1024x576",
    "loras": [{"path": "x.safetensors", "strength": 0.8}],
}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def store(studio: object, count: int) -> list[uuid.UUID]:
    at = datetime.now(UTC)
    project = uuid.uuid4()
    ids: list[uuid.UUID] = []
    batch: list[object] = []
    kind = resolve_default("image_generation")
    for i in range(count):
        if i % 2:
            g = Generation.start(project, "image", at, params=PARAMS)
            g.add_variant(uuid.uuid4(), f"/media/{i}.png", at, params=PARAMS)
            batch.append(g)
        else:
            batch.append(
                Task.create(
                    project_id=project, owner_id="bench", task_type=kind, params=PARAMS, at=at
                )
            )
        ids.append(batch[-1].id)  # type: ignore[attr-defined]
        if len(batch) == 500:
            studio.save(*batch)  # type: ignore[attr-defined]
            batch = []
    if batch:
        studio.save(*batch)  # type: ignore[attr-defined]
    return ids


def sweep(studio: object, ids: list[uuid.UUID], every: int) -> list[tuple[int, float]]:
    points = [(0, rss_mb())]
    for n, ident in enumerate(ids, start=1):
        studio.repository.get(ident)  # type: ignore[attr-defined]
        if n % every == 0:
            gc.collect()
            points.append((n, rss_mb()))
    return points


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=int, default=10_000)
    parser.add_argument("--aggregates", type=int, default=30_000)
    args = parser.parse_args()
    db = resolve(os.environ.get("DATABASE_URL"), Path(".darkroom/bench-pg"))
    schema = f"cachemem_{uuid.uuid4().hex[:6]}"
    create_schema(db, schema)
    try:
        writer = build_studio(db, schema, pool_size=2, cache_size=0)
        started = time.perf_counter()
        ids = store(writer, args.aggregates)
        writer.close()
        print(f"# Cache memory, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
        print(
            f"`python bench/cache_memory.py --cache {args.cache} "
            f"--aggregates {args.aggregates}` ({len(ids):,} aggregates stored in "
            f"{time.perf_counter() - started:.0f} s: half tasks, half generations with "
            f"one variant, ≈ 0.6 KB of params each)\n"
        )
        every = max(1, args.aggregates // 6)
        studio = build_studio(db, schema, pool_size=2, cache_size=args.cache)
        base = sweep(studio, ids, every)
        cache = studio.repository.cache
        print(
            f"- cache of {args.cache:,}: {len(cache.cache) if cache else 0:,} aggregates "
            "held at the end\n"
        )
        print("| loads | RSS MB |\n| ---: | ---: |")
        for n, mb in base:
            print(f"| {n:,} | {mb:.0f} |")
        full = [mb for n, mb in base if n >= args.cache]
        if len(full) >= 2:
            print(
                f"\nafter the cache filled ({args.cache:,} loads): RSS {full[0]:.0f} → "
                f"{full[-1]:.0f} MB over {base[-1][0] - args.cache:,} more loads "
                f"({full[-1] - full[0]:+.0f} MB)"
            )
    finally:
        drop_schema(db, schema)


if __name__ == "__main__":
    main()
