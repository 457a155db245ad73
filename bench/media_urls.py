"""What signing media URLs costs an answer.

    python bench/media_urls.py [--items 200] [--pages 50] [--runs 5]

`MediaUrls.sign_text` on a gallery page as JSON text (`--items` generations, three
media locations each: location, thumbnail, an input in params), the first time (one
HMAC per location) and again within the 300 s step (cached), beside `json.dumps` of
the same page, which every answer pays anyway. Min over `--runs` runs of `--pages`
pages each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime.api.media import MediaUrls


def page(items: int) -> dict[str, Any]:
    return {
        "items": [
            {
                "id": str(uuid.uuid4()),
                "project_id": str(uuid.uuid4()),
                "location": f"/media/2026/{uuid.uuid4().hex}.png",
                "thumbnail_url": f"/media/uploads/{uuid.uuid4().hex}.webp",
                "type": "image",
                "starred": False,
                "params": {
                    "prompt": "a fox " * 20,
                    "seed": 1,
                    "image_url": f"/media/uploads/{uuid.uuid4().hex}.png",
                },
            }
            for _ in range(items)
        ],
        "next_cursor": None,
    }


def per_item_ms(fn: Callable[[Any], Any], items: Sequence[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - started) / len(items) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    first, cached, dumps = [], [], []
    for _ in range(args.runs):
        pages = [page(args.items) for _ in range(args.pages)]
        texts = [json.dumps(p, separators=(",", ":")) for p in pages]
        urls = MediaUrls("bench-secret-" + "x" * 20)
        first.append(per_item_ms(urls.sign_text, texts))
        cached.append(per_item_ms(urls.sign_text, texts))
        dumps.append(per_item_ms(lambda p: json.dumps(p, separators=(",", ":")), pages))
    print(
        f"{args.items} items, {3 * args.items} locations, {len(texts[0])} bytes per page: "
        f"sign_text {min(first):.2f} ms first, {min(cached):.2f} ms cached; "
        f"json.dumps {min(dumps):.2f} ms"
    )


if __name__ == "__main__":
    main()
