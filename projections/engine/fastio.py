"""The hot path's I/O: reading the log as tuples, decoding with orjson when present.

Both keep the library's semantics: notifications carry the same fields the
mapper reads, and `FastTranscoder` decodes exactly what `JSONTranscoder`
encoded (same registered transcodings, applied bottom-up like its object
hook), so upcasting and custom types behave as in the application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder, Mapper, UUIDAsHex
from psycopg import sql

try:  # optional: 5x faster than the stdlib on our payloads (bench/projections.py)
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    orjson = None  # type: ignore[assignment]

UUID_CACHE = 200_000  # distinct ids remembered by the decoder

if TYPE_CHECKING:
    import psycopg
    from eventsourcing.application import Application


class Note:
    """A notification row: what `Mapper.to_domain_event` reads, without dataclass cost."""

    __slots__ = ("id", "originator_id", "originator_version", "state", "topic")

    def __init__(
        self, id: int, originator_id: Any, originator_version: int, topic: str, state: bytes
    ) -> None:
        self.id = id
        self.originator_id = originator_id
        self.originator_version = originator_version
        self.topic = topic
        self.state = state


def select_page_sql(app: Application[Any], bounded: bool) -> sql.Composed:
    recorder: Any = app.recorder
    stop = sql.SQL(" AND notification_id <= %s") if bounded else sql.SQL("")
    return sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {}.{} WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s"
    ).format(
        sql.Identifier(recorder.datastore.schema), sql.Identifier(recorder.events_table_name), stop
    )


def read_page(
    conn: psycopg.Connection[Any], statement: sql.Composed, after: int, limit: int, stop: int | None
) -> list[Note]:
    params = (after, stop, limit) if stop is not None else (after, limit)
    cur = conn.cursor(binary=True)
    cur.execute(statement, params, prepare=True)
    return [Note(*row) for row in cur.fetchall()]


class FastTranscoder(JSONTranscoder):
    """`JSONTranscoder` whose decode parses with orjson, then revives typed objects."""

    def __init__(self, source: JSONTranscoder) -> None:
        super().__init__()
        self.types = dict(source.types)
        self.names = dict(source.names)
        self._hex_uuids = type(self.names.get("uuid_hex")) is UUIDAsHex
        self._uuids: dict[str, UUID] = {}

    def decode(self, data: bytes) -> Any:
        if orjson is None:
            return super().decode(data)
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return super().decode(data)  # e.g. NaN or huge ints, which orjson refuses
        return self._revive(parsed)

    def _revive(self, value: Any) -> Any:
        if type(value) is dict:
            if len(value) == 2 and "_type_" in value and type(value.get("_data_")) is str:
                return self._leaf(value)  # a typed leaf: uuid, datetime, decimal…
            for key, item in value.items():
                kind = type(item)
                if kind is dict:
                    if len(item) == 2 and "_type_" in item and type(item.get("_data_")) is str:
                        value[key] = self._leaf(item)
                    else:
                        value[key] = self._revive(item)
                elif kind is list:
                    value[key] = self._revive(item)
            return self._decode_obj(value)
        if type(value) is list:
            for index, item in enumerate(value):
                if type(item) is dict or type(item) is list:
                    value[index] = self._revive(item)
        return value

    def _leaf(self, leaf: dict[str, Any]) -> Any:
        # The same ids recur across events (a project's, a generation's): one
        # dict lookup instead of parsing a UUID each time. UUIDs are immutable.
        if leaf["_type_"] == "uuid_hex" and self._hex_uuids:
            data = leaf["_data_"]
            found = self._uuids.get(data)
            if found is None:
                if len(self._uuids) >= UUID_CACHE:
                    self._uuids.clear()
                found = self._uuids[data] = UUID(data)
            return found
        return self._decode_obj(leaf)


def fast_mapper(app: Application[Any]) -> Mapper[Any]:
    """The application's mapper with a `FastTranscoder` (same cipher and compressor)."""
    mapper: Any = app.mapper
    if not isinstance(mapper.transcoder, JSONTranscoder) or type(mapper) is not Mapper:
        unchanged: Mapper[Any] = mapper
        return unchanged
    return Mapper(
        transcoder=FastTranscoder(mapper.transcoder),
        cipher=mapper.cipher,
        compressor=mapper.compressor,
    )
