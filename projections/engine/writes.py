"""Coalesced writes as plain data (`Op`s), applied in one transaction.

Views turn their pending rows into ops (`View.take()`); the runner applies
them, possibly in its writer process while the next batch is being folded.
An upsert or an insert is ONE prepared statement whose one parameter is the rows
as a JSON array: `INSERT … SELECT … FROM json_populate_recordset(…) [ON CONFLICT
DO UPDATE]`. PostgreSQL converts each field to its column's type, as COPY's text
input did. Before (issue 17), an upsert COPYed into a temporary staging table, moved
the rows with a second statement and emptied the stage with a third, each planned
anew; an insert was one COPY. A batch of a few commands wrote 3-4 small tables.
"""

from __future__ import annotations

import functools
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


def rows_json(rows: Iterable[Row]) -> str:
    """The rows as one JSON array. PostgreSQL stores no NUL character (text) nor
    \\u0000 (jsonb): one would fail the whole batch and stop the runner on every
    restart, so it becomes U+FFFD. A NUL character is "\\u0000" in JSON, and so is a
    backslash and "u0000" once escaped (which became "\\ufffd" before, as it does here)."""
    text = "[" + ",".join([dumps(row) for row in rows]) + "]"
    if "\\u0000" in text:
        text = text.replace("\\u0000", "\\ufffd")
    return text


@functools.lru_cache(maxsize=256)
def _statement(table: str, columns: tuple[str, ...], key: tuple[str, ...] | None) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    text = (
        f'INSERT INTO "{table}" ({cols}) SELECT {cols} '
        f'FROM json_populate_recordset(NULL::"{table}", %s::json)'
    )
    if key is None:
        return text
    keys = ", ".join(f'"{c}"' for c in key)
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in key)
    return text + f" ON CONFLICT ({keys}) DO UPDATE SET {sets}"


def copy_rows(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: Sequence[str],
    rows: Sequence[Row],
    json_columns: frozenset[str] = frozenset(),
) -> int:
    """Insert rows that cannot exist yet into `table`; returns the count. (The name is
    from when this was a COPY; JSON columns are JSON values in the rows' JSON.)"""
    if rows:
        cur.execute(_statement(table, tuple(columns), None), (rows_json(rows),), prepare=True)
    return len(rows)


def upsert(
    cur: psycopg.Cursor[Any],
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Sequence[Row],
    json_columns: frozenset[str] = frozenset(),
) -> None:
    """Insert or replace `rows` (at most one per key) in one statement."""
    if rows:
        cur.execute(_statement(table, tuple(columns), tuple(key)), (rows_json(rows),), prepare=True)


def delete_keys(
    cur: psycopg.Cursor[Any], table: str, key: str, values: Sequence[Any], cast: str = "uuid"
) -> None:
    if values:
        cur.execute(
            f'DELETE FROM "{table}" WHERE "{key}" = ANY(%s::{cast}[])', ([str(v) for v in values],)
        )
