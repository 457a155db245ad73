"""How the change log lies on disk: a batch's rows fill its own pages."""

from __future__ import annotations

import random
import string

import pytest

from projections import changelog, db

pytestmark = pytest.mark.timeout(60)

# Payload bytes, all under the ≈ 2 KB past which PostgreSQL moves a value out of line.
SIZES = [1900, 1500, 1200, 950, 800, 700, 600, 500, 420, 350]


def batch(first: int, count: int) -> list[changelog.Entry]:
    # Random text: a repeated character would be compressed in line and take
    # no room, which is not what real rows do.
    rng = random.Random(first)
    return [
        (
            first + i,
            f"project:p{i % 7}",
            [
                (
                    "generation.upserted",
                    {"pad": "".join(rng.choices(string.ascii_letters, k=SIZES[i % len(SIZES)]))},
                )
            ],
        )
        for i in range(count)
    ]


def blocks(conn, low: int, high: int) -> set[int]:
    rows = conn.execute(
        "SELECT (ctid::text::point)[0]::int AS block FROM changelog "
        "WHERE position BETWEEN %s AND %s",
        (low, high),
    ).fetchall()
    return {r["block"] for r in rows}


def test_a_later_batch_does_not_go_back_to_the_pages_of_an_earlier_one(database, schema):
    # A row put on a page last written before a checkpoint costs a full-page
    # image in the WAL: later batches must not fill earlier batches' gaps.
    with db.connect(database.conninfo, schema, autocommit=True) as conn:
        for statement in changelog.DDL:
            conn.execute(statement)
        conn.execute("TRUNCATE changelog")
        for n in range(4):
            with conn.transaction():
                changelog.write(conn.cursor(), batch(1 + n * 1000, 400))
        earlier = blocks(conn, 1, 3999)
        with conn.transaction():
            changelog.write(conn.cursor(), batch(5001, 400))
        later = blocks(conn, 5001, 5400)
        # At most the page the earlier batch ended on, where the next row goes first.
        assert later & earlier <= {max(earlier)}, sorted(later & earlier)
