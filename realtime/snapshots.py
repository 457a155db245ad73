"""What a subscription reads from PostgreSQL (blocking; run off the event loop).

`take_snapshot`: a topic's view and the position P it is exactly as of, in one
REPEATABLE READ transaction (each topic kind's query lives in the view that owns its
tables: `projections.views.topics`); `retained_range` and `read_topic`: the change rows a
`since` asks for, none past the watermark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from realtime.fanout import Change, read_watermark
from realtime.protocol import split_topic

if TYPE_CHECKING:
    import psycopg


def take_snapshot(conn: psycopg.Connection[Any], topic: str) -> tuple[int, Any]:
    """The topic's view and the position P it is exactly as of (one repeatable read)."""
    from projections.reading import snapshot
    from projections.views.topics import snapshot_of

    kind, key = split_topic(topic)
    with snapshot(conn) as positions:
        position = min(positions.values(), default=0)
        return position, snapshot_of(conn, kind, key)


def retained_range(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(oldest retained position, watermark): `since` must lie in [oldest - 1, watermark]."""
    from projections.changelog import oldest_retained_position

    return oldest_retained_position(conn), read_watermark(conn)


def read_topic(
    conn: psycopg.Connection[Any], topic: str, after: int, limit: int
) -> tuple[list[Change], bool]:
    """One page of the topic's rows after `after`, none past the watermark; (rows, done)."""
    from projections.changelog import changes_since
    from projections.reading import snapshot

    with snapshot(conn) as positions:
        watermark = min(positions.values(), default=0)
        rows = changes_since(conn, [topic], after, limit, raw=True)
    kept = [r for r in rows if r["position"] <= watermark]
    # The stored text, as the relay sends it live: no parse and re-dump per row.
    changes = [Change(r["position"], r["topic"], r["kind"], r["payload"]) for r in kept]
    return changes, len(rows) < limit or len(kept) < len(rows)
