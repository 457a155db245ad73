"""The change log the websocket hub streams from.

Written by the runner in the same transaction as the view rows: one row per
(topic, event) at most, `payload` = the row as the matching query returns it
after that event. When one event changes several things on one topic (a new
primary variant: two variants and the generation row) they merge into one row
of kind `batch` with `payload = {"changes": [{"kind", "data"}, …]}`. Each batch
ends with `NOTIFY darkroom_changes, '<max position>'`.

Topics: `project:{id}` (gallery rows, shots, the project), `shot:{id}`,
`generation:{id}` (its gallery row and its variants), `tasks:{project_id}`,
`credits:{user_id}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from projections.views.base import Row, dumps

if TYPE_CHECKING:
    import psycopg

BATCH = "batch"
RETENTION = timedelta(days=7)

DDL = (
    # Position first: rows arrive in position order, so inserts append to the
    # index's right edge (a random (topic, position) B-tree cost ~ twice as
    # much per row), and the relay's "everything after P" is a range scan
    # (with topic first it read the whole index: 86 ms at 571k rows). A
    # resume of one topic scans the index from `since`: 14 ms over 571k rows.
    # `payload` is text, not json: it only ever holds JSON the writer serialised
    # itself, and PostgreSQL's json input check cost 1.8 µs a row, a quarter of
    # the log's database CPU. Readers cast (`payload::json`) or relay the text.
    """CREATE TABLE IF NOT EXISTS changelog (
        position bigint NOT NULL,
        topic text NOT NULL,
        kind text NOT NULL,
        payload text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (position, topic))""",
    # Pruning goes by age through this index.
    "CREATE INDEX IF NOT EXISTS changelog_created ON changelog USING brin (created_at)",
    """CREATE TABLE IF NOT EXISTS changelog_state (
        id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        pruned_through bigint NOT NULL DEFAULT 0)""",
    "INSERT INTO changelog_state (id) VALUES (1) ON CONFLICT DO NOTHING",
)

# A table made by an older release gets the current layout on start: the key
# (position, topic), and `payload` as text. Reads the catalog only (no lock on
# the table) unless there is something to change. Each change rewrites the
# table under an exclusive lock (seconds per million rows): it waits at most
# two seconds for that lock, and when it cannot have it (a busy relay, another
# runner writing), it leaves the table as it is for a later start. The old
# layout keeps working meanwhile: every reader casts the payload.
MIGRATE = """DO $$
    DECLARE
        waited text := current_setting('lock_timeout');
    BEGIN
        PERFORM set_config('lock_timeout', '2s', true);
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
                       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                       WHERE i.indrelid = 'changelog'::regclass AND i.indisprimary
                       AND a.attname = 'topic') THEN
                ALTER TABLE changelog DROP CONSTRAINT changelog_pkey,
                    ADD PRIMARY KEY (position, topic);
            END IF;
            IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'changelog'::regclass
                       AND attname = 'payload' AND atttypid = 'json'::regtype) THEN
                ALTER TABLE changelog ALTER COLUMN payload TYPE text;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'changelog layout not updated: the table is busy; next start';
        END;
        PERFORM set_config('lock_timeout', waited, true);
    END $$"""

Entry = tuple[int, str, list[tuple[str, Row]]]


def merged(changes: list[tuple[str, Row]]) -> tuple[str, Any]:
    """One topic's changes of one event as (kind, payload)."""
    if len(changes) == 1:
        return changes[0]
    return BATCH, {"changes": [{"kind": kind, "data": data} for kind, data in changes]}


def write(cur: psycopg.Cursor[Any], entries: Sequence[Entry]) -> int:
    """COPY the batch's change rows, longest first; returns how many.

    The COPY text is built here: topics, kinds and JSON never hold tabs or
    newlines (JSON escapes them), so only backslashes need doubling. A row
    object emitted on two topics is serialised once.
    """
    texts: dict[int, str] = {}

    def text_of(row: Row) -> str:
        found = texts.get(id(row))
        if found is None:
            found = texts[id(row)] = dumps(row).replace("\\", "\\\\")
        return found

    lines = []
    for position, topic, changes in entries:
        if len(changes) == 1:
            kind, payload = changes[0]
            text = text_of(payload)
        else:
            # {"changes": [{"kind": k, "data": row}, …]} from each row's cached text
            kind = BATCH
            text = (
                '{"changes":['
                + ",".join(f'{{"kind":"{k}","data":{text_of(row)}}}' for k, row in changes)
                + "]}"
            )
        if "\\u0000" in text:
            text = text.replace("\\\\u0000", "\\\\ufffd")  # doubled for COPY above
        if "\x00" in topic:
            topic = topic.replace("\x00", "\ufffd")
        if "\\" in topic or "\t" in topic or "\n" in topic:
            topic = topic.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        lines.append(f"{position}\t{topic}\t{kind}\t{text}\n")
    # Longest first: the short rows at the end then fill the gaps this batch
    # left on its own pages. In position order, the next batches' short rows
    # went back to earlier batches' pages through the free-space map, each to
    # a page last written before the latest checkpoint: a full-page image
    # (8 KB of WAL for a 700-byte row) per page. Catching up the bench
    # history: 0.20 → 0.04 full-page images and 3.8 → 2.8 KB of WAL an event.
    # Row order on disk means nothing: every reader orders by (position, topic).
    lines.sort(key=len, reverse=True)
    with cur.copy("COPY changelog (position, topic, kind, payload) FROM STDIN") as copy:
        copy.write("".join(lines))
    return len(lines)


def changes_since(
    conn: psycopg.Connection[Any],
    topics: Sequence[str],
    after_position: int,
    limit: int = 1000,
    *,
    raw: bool = False,
) -> list[Row]:
    """Change rows of `topics` with position > `after_position`, in position order.

    Returns `[{"position", "topic", "kind", "payload"}…]` (at most `limit`), the
    payload parsed, or with `raw` the JSON text as stored (to relay as it is).
    Check `oldest_retained_position` first: below it, rows were pruned.
    """
    payload = "payload::text AS payload" if raw else "payload::json AS payload"
    rows = conn.execute(
        f"SELECT position, topic, kind, {payload} FROM changelog "
        "WHERE topic = ANY(%s) AND position > %s ORDER BY position, topic LIMIT %s",
        (list(topics), after_position, limit),
    ).fetchall()
    return [dict(r) for r in rows]


def oldest_retained_position(conn: psycopg.Connection[Any]) -> int:
    """Every change with a position ≥ this is still in the log (1 when nothing was pruned).

    A client resuming with `since=P` can be served iff `P + 1 >= oldest_retained_position`.
    """
    row = conn.execute("SELECT pruned_through FROM changelog_state WHERE id = 1").fetchone()
    pruned = 0 if row is None else int(row["pruned_through"] if isinstance(row, dict) else row[0])
    return pruned + 1


def prune(conn: psycopg.Connection[Any], older_than: timedelta = RETENTION) -> int:
    """Delete change rows written before now - `older_than`; returns how many."""
    with conn.transaction():
        row = conn.execute(
            "WITH gone AS (DELETE FROM changelog WHERE created_at < now() - %s "
            "RETURNING position) SELECT count(*) AS n, max(position) AS upto FROM gone",
            (older_than,),
        ).fetchone()
        assert row is not None
        n, upto = (row["n"], row["upto"]) if isinstance(row, dict) else row
        if upto is not None:
            conn.execute(
                "UPDATE changelog_state SET pruned_through = "
                "GREATEST(pruned_through, %s) WHERE id = 1",
                (upto,),
            )
    return int(n)
