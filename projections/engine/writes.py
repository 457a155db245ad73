"""Coalesced writes as plain data (`Op`s), applied in one transaction.

Views turn their pending rows into ops (`View.take()`); the runner applies
them, possibly in its writer process while the next batch is being folded.
An upsert COPYs the rows into a temporary staging table, then moves them with
one `INSERT … ON CONFLICT DO UPDATE`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from projections.views.base import Row, dumps


@dataclass(frozen=True, slots=True)
class Upsert:
    base: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    rows: Sequence[Row]
    json_columns: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Insert:
    """Rows that cannot exist yet (created in this batch): COPY straight into the table."""

    base: str
    columns: tuple[str, ...]
    rows: Sequence[Row]
    json_columns: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Delete:
    base: str
    key: str
    values: Sequence[Any]
    cast: str = "uuid"


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL with `{base}` placeholders for table names."""

    template: str
    params: tuple[Any, ...]


Op = Upsert | Insert | Delete | Statement


def apply(cur: psycopg.Cursor[Any], names: dict[str, str], ops: Iterable[Op]) -> None:
    for op in ops:
        if isinstance(op, Upsert):
            upsert(cur, names[op.base], op.columns, op.key, op.rows, op.json_columns)
        elif isinstance(op, Insert):
            copy_rows(cur, names[op.base], op.columns, op.rows, op.json_columns)
        elif isinstance(op, Delete):
            delete_keys(cur, names[op.base], op.key, op.values, op.cast)
        else:
            cur.execute(op.template.format(**names), op.params)


def split(
    base: str,
    columns: tuple[str, ...],
    key: tuple[str, ...],
    pending: dict[Any, Row],
    new: set[Any],
    json_columns: frozenset[str] = frozenset(),
) -> list[Op]:
    """Pending rows as ops: those created in this batch COPYed in, the rest upserted."""
    fresh = [row for k, row in pending.items() if k in new]
    known = [row for k, row in pending.items() if k not in new]
    ops: list[Op] = []
    if known:
        ops.append(Upsert(base, columns, key, known, json_columns))
    if fresh:
        ops.append(Insert(base, columns, fresh, json_columns))
    return ops


def _stage(cur: psycopg.Cursor[Any], table: str) -> str:
    stage = f"_stage_{table}"
    conn: Any = cur.connection
    made: set[str] = conn.__dict__.setdefault("_darkroom_stages", set())
    if stage not in made:
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table}") ON COMMIT DELETE ROWS'
        )
        made.add(stage)
    return stage


def copy_rows(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: Sequence[str],
    rows: Iterable[Row],
    json_columns: frozenset[str] = frozenset(),
) -> int:
    """COPY dict rows into `table` (JSON columns dumped here); returns the count."""
    cols = ", ".join(f'"{c}"' for c in columns)
    count = 0
    plan = [(c, c in json_columns) for c in columns]
    with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
        write = copy.write_row
        for row in rows:
            values = [
                dumps(row[c]) if is_json and row[c] is not None else row[c] for c, is_json in plan
            ]
            write(
                [
                    no_nul(v) if type(v) is str and ("\x00" in v or "\\u0000" in v) else v
                    for v in values
                ]
            )
            count += 1
    return count


def no_nul(text: str) -> str:
    """PostgreSQL stores no NUL character (text) nor \\u0000 (jsonb): one would fail the
    whole batch and stop the runner on every restart. It becomes U+FFFD."""
    return text.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")


def upsert(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Row],
    json_columns: frozenset[str] = frozenset(),
) -> None:
    """Insert or replace `rows` (at most one per key) in two statements."""
    if not rows:
        return
    stage = _stage(cur, table)
    copy_rows(cur, stage, columns, rows, json_columns)
    cols = ", ".join(f'"{c}"' for c in columns)
    keys = ", ".join(f'"{c}"' for c in key)
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in key)
    cur.execute(
        f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM "{stage}" '
        f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"
    )
    # A second upsert into the same table in this transaction starts empty.
    cur.execute(f'DELETE FROM "{stage}"')


def delete_keys(
    cur: psycopg.Cursor[Any], table: str, key: str, values: Sequence[Any], cast: str = "uuid"
) -> None:
    if values:
        cur.execute(
            f'DELETE FROM "{table}" WHERE "{key}" = ANY(%s::{cast}[])', ([str(v) for v in values],)
        )
