"""Idempotency keys are bound to their actor, route and request, refused while in flight,
and expire after 24 h: against the real commands table."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from darkroom.database import Database, create_schema, drop_schema
from darkroom.wiring import build_studio
from domain.errors import IdempotencyKeyInFlightError, IdempotencyKeyReusedError
from domain.metadata import CommandMeta
from domain.services.written import ShotWritten
from domain.studio import Studio


def keyed(route: str = "POST /api/projects", body: str = "h1", **kw: Any) -> CommandMeta:
    return CommandMeta.for_user(
        "alice", idempotency_key=f"k-{uuid.uuid4().hex[:8]}", route=route, request_hash=body, **kw
    )


def nothing(value: object) -> Callable[[], Any]:
    return lambda: ([], {"value": value})


def commands_table(studio: Studio) -> str:
    recorder: Any = studio.recorder
    return f'"{recorder.datastore.schema}".{recorder.commands_table_name}'


def rows(studio: Studio, database: Database, key: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database.conninfo) as conn:
        return conn.execute(
            f"SELECT result->>'value', route, request_hash FROM "
            f"{commands_table(studio)} WHERE key = %s",
            (key,),
        ).fetchall()


def test_a_key_replays_its_first_result_for_the_same_route_and_request(studio: Studio) -> None:
    owner = f"user-{uuid.uuid4().hex[:6]}"
    meta = CommandMeta.for_user(
        owner, idempotency_key="film", route="POST /api/projects", request_hash="abc"
    )
    first = studio.create_project(owner, "Film", meta=meta)
    head = studio.head_position()
    again = studio.create_project(owner, "Film", meta=replace(meta, command_id="another"))
    assert again == {**first, "replayed": True}
    assert studio.head_position() == head


def test_a_key_reused_on_another_route_or_body_is_refused_and_writes_nothing(
    studio: Studio,
) -> None:
    owner = f"user-{uuid.uuid4().hex[:6]}"
    meta = CommandMeta.for_user(
        owner, idempotency_key="k", route="POST /api/projects", request_hash="abc"
    )
    project = studio.create_project(owner, "Film", meta=meta)["project_id"]
    head = studio.head_position()
    with pytest.raises(IdempotencyKeyReusedError, match="another route"):
        studio.update_project(
            project, owner, name="Other", meta=replace(meta, route="PATCH /api/projects/{id}")
        )
    with pytest.raises(IdempotencyKeyReusedError, match="another request body"):
        studio.create_project(owner, "Another", meta=replace(meta, request_hash="xyz"))
    assert studio.head_position() == head
    # The same key of another actor is another key.
    other = f"user-{uuid.uuid4().hex[:6]}"
    made = studio.create_project(other, "Theirs", meta=replace(meta, actor=f"user:{other}"))
    assert "replayed" not in made


def test_an_unknown_route_or_hash_matches_any_request(studio: Studio, database: Database) -> None:
    """Rows stored before keys were bound (NULLs), and in-process callers (no route)."""
    meta = keyed()
    legacy = replace(meta, route=None, request_hash=None)
    first = studio._command(legacy, nothing(1))
    assert rows(studio, database, f"user:alice:{meta.idempotency_key}") == [("1", None, None)]
    assert studio._command(meta, nothing(2)) == {**first, "replayed": True}
    bound = keyed()
    first = studio._command(bound, nothing(3))
    assert studio._command(replace(bound, route=None, request_hash=None), nothing(4)) == {
        **first,
        "replayed": True,
    }


def test_a_key_in_flight_in_this_process_is_refused_until_its_first_command_answers(
    studio: Studio,
) -> None:
    meta = keyed()
    started, release, answers = threading.Event(), threading.Event(), []

    def slow() -> Any:
        started.set()
        assert release.wait(10)
        return [], {"value": "first"}

    runner = threading.Thread(target=lambda: answers.append(studio._command(meta, slow)))
    runner.start()
    assert started.wait(10)
    try:
        with pytest.raises(IdempotencyKeyInFlightError):
            studio._command(meta, nothing("second"))
        with pytest.raises(IdempotencyKeyReusedError):
            studio._command(replace(meta, request_hash="other"), nothing("third"))
        assert f"user:alice:{meta.idempotency_key}" in studio.keys_in_flight
    finally:
        release.set()
        runner.join(10)
    assert answers[0]["value"] == "first"
    assert studio._command(meta, nothing("later")) == {**answers[0], "replayed": True}
    assert f"user:alice:{meta.idempotency_key}" not in studio.keys_in_flight


def test_the_thread_holding_a_key_may_nest_commands_under_it(studio: Studio) -> None:
    meta = keyed()

    def outer() -> Any:
        inner = studio._command(
            replace(meta, idempotency_key=meta.idempotency_key), nothing("inner")
        )
        return [], {"value": "outer", "inner": inner["value"]}

    # The nested command stores the key first; the outer one then finds it stored.
    answer = studio._command(meta, outer)
    assert answer["value"] == "inner" and answer["replayed"]


def test_a_typed_result_replays_as_its_own_class_and_a_row_stored_as_a_plain_dict_too(
    studio: Studio, database: Database
) -> None:
    """Rows stored before results were typed hold the JSON answer without a class tag."""
    owner = f"user-{uuid.uuid4().hex[:6]}"
    project = studio.create_project(owner, "Film").project_id
    meta = CommandMeta.for_user(owner, idempotency_key=f"k-{uuid.uuid4().hex[:8]}")
    first = studio.create_shot(project, owner, "Opening", meta=meta)
    again = studio.create_shot(project, owner, "Opening", meta=meta)
    assert isinstance(again, ShotWritten)
    assert (again.shot_id, again.position, again.replayed) == (first.shot_id, first.position, True)
    old = CommandMeta.for_user(owner, idempotency_key=f"k-{uuid.uuid4().hex[:8]}")
    stored = studio.create_shot(project, owner, "Closing", meta=old)
    with psycopg.connect(database.conninfo) as conn:
        conn.execute(
            f"UPDATE {commands_table(studio)} SET result = %s::jsonb WHERE key = %s",
            (json.dumps({"shot_id": str(stored.shot_id)}), f"user:{owner}:{old.idempotency_key}"),
        )
    replayed = studio.create_shot(project, owner, "Closing", meta=old)
    assert isinstance(replayed, ShotWritten)
    assert replayed.as_json() == {
        "shot_id": str(stored.shot_id),
        "position": stored.position,
        "replayed": True,
    }


@pytest.fixture
def second_process(database: Database, schema: str) -> Iterator[Studio]:
    """Another studio on the same schema: another process's pool and in-flight set."""
    other = build_studio(database, schema, pool_size=2)
    yield other
    other.close()


@pytest.mark.parametrize("same_request", [True, False])
def test_across_processes_the_second_insert_loses_and_answers_as_a_replay_or_422(
    studio: Studio, second_process: Studio, same_request: bool
) -> None:
    meta = keyed()
    started, release, outcome = threading.Event(), threading.Event(), []

    def slow() -> Any:
        started.set()
        assert release.wait(10)
        return [], {"value": "here"}

    def run() -> None:
        try:
            outcome.append(studio._command(meta, slow))
        except IdempotencyKeyReusedError as error:
            outcome.append(error)

    runner = threading.Thread(target=run)
    runner.start()
    assert started.wait(10)
    other_meta = meta if same_request else replace(meta, request_hash="different")
    there = second_process._command(other_meta, nothing("there"))
    release.set()
    runner.join(10)
    if same_request:
        assert outcome == [{**there, "replayed": True}]
    else:
        assert isinstance(outcome[0], IdempotencyKeyReusedError)


def test_keys_expire_after_24_hours_and_are_pruned(studio: Studio, database: Database) -> None:
    meta = keyed()
    key = f"user:alice:{meta.idempotency_key}"
    studio._command(meta, nothing("old"))
    with psycopg.connect(database.conninfo) as conn:
        conn.execute(
            f"UPDATE {commands_table(studio)} SET created_at = now() - "
            "interval '24 hours 1 minute' WHERE key = %s",
            (key,),
        )
    store: Any = studio.recorder
    assert store.command_record(key) is None
    # An expired key is free: another route and body run anew and replace the row.
    fresh = studio._command(
        replace(meta, route="POST /api/shots", request_hash="h2"), nothing("new")
    )
    assert "replayed" not in fresh
    assert rows(studio, database, key) == [("new", "POST /api/shots", "h2")]
    expired = keyed()
    studio._command(expired, nothing("to prune"))
    with psycopg.connect(database.conninfo) as conn:
        conn.execute(
            f"UPDATE {commands_table(studio)} SET created_at = now() - "
            "interval '25 hours' WHERE key = %s",
            (f"user:alice:{expired.idempotency_key}",),
        )
    assert studio.prune_commands() >= 1
    assert rows(studio, database, f"user:alice:{expired.idempotency_key}") == []
    assert rows(studio, database, key) == [("new", "POST /api/shots", "h2")]


def test_a_commands_table_from_before_binding_gains_its_columns(database: Database) -> None:
    name = f"t_idem_migrate_{uuid.uuid4().hex[:6]}"
    create_schema(database, name)
    try:
        with psycopg.connect(database.conninfo, autocommit=True) as conn:
            conn.execute(
                f'CREATE TABLE "{name}".darkroom_events_commands (key text PRIMARY KEY, '
                "result jsonb NOT NULL, position bigint, "
                "created_at timestamptz DEFAULT now())"
            )
            conn.execute(
                f'INSERT INTO "{name}".darkroom_events_commands (key, result, position) '
                """VALUES ('user:alice:old', '{"value": "before"}', 0)"""
            )
            # The append function as it was (no routes, hashes, TTL): replaced, not kept.
            conn.execute(
                f'CREATE FUNCTION "{name}".darkroom_events_append(uuid[], bigint[], '
                "text[], bytea[], int[], text[], jsonb[], int[], int[], int, int[], "
                "int[], text, OUT o_ids bigint[], OUT o_rejected int[]) "
                "LANGUAGE sql AS $$ SELECT NULL::bigint[], NULL::int[] $$"
            )
        studio = build_studio(database, name, pool_size=2)
        try:
            meta = CommandMeta.for_user(
                "alice", idempotency_key="old", route="POST /x", request_hash="h"
            )
            assert studio._command(meta, nothing("after")) == {
                "value": "before",
                "position": 0,
                "replayed": True,
            }
            fresh = keyed()
            studio._command(fresh, nothing("bound"))
            assert rows(studio, database, f"user:alice:{fresh.idempotency_key}") == [
                ("bound", "POST /api/projects", "h1")
            ]
            with psycopg.connect(database.conninfo) as conn:
                functions = conn.execute(
                    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n "
                    "ON n.oid = p.pronamespace WHERE n.nspname = %s "
                    "AND p.proname = 'darkroom_events_append'",
                    (name,),
                ).fetchone()
            assert functions == (1,)
        finally:
            studio.close()
    finally:
        drop_schema(database, name)
