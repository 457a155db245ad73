"""Schemathesis hooks for the API fuzz runs (CI's short form and `bench/api_fuzz.py`).

`positive_data_acceptance` is configured (tests/realtime/schemathesis.toml) to take 422
for schema-valid data, because some 422s depend on state no schema can hold (restoring a
project that is not deleted, a `min_position` past the log's head, a cursor this server
never issued, a shot order that misses a shot): docs/API.md lists them. This check keeps
the rest of that promise: a schema-valid request is never refused for its *fields*
(`invalid_fields`, `nul_character`), i.e. the document says everything field validation
enforces, except a rule between two lists' lengths (error type `list_lengths`).
"""

from __future__ import annotations

import ast
import re
import threading
from typing import Any

import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import ensure_resource_availability

FIELD_CODES = ("invalid_fields", "nul_character")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LIST_LENGTHS = "list_lengths"  # realtime.models.LIST_LENGTHS

# CPython 3.11 (3.11.7 here) counts the AST constructor's recursion depth per process,
# not per thread (gh-106905): two of schemathesis' workers describing a filter lambda at
# once (hypothesis parses its source) raise "SystemError: AST constructor recursion depth
# mismatch" and the run ends with a Runtime Error. One parse at a time avoids it.
_parse, _parsing = ast.parse, threading.Lock()


def _one_parse_at_a_time(*args: Any, **kwargs: Any) -> Any:
    with _parsing:
        return _parse(*args, **kwargs)


ast.parse = _one_parse_at_a_time


def _code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


@schemathesis.check
def valid_fields_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """A schema-valid request (positive mode) answered 422 must not be a field refusal."""
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return None
    if (
        response.status_code == 422
        and (code := _code(response)) in FIELD_CODES
        and not _only_length_relations(response)
    ):
        raise AssertionError(f"schema-valid data refused as {code}: {response.text[:500]}")
    return None


def _only_length_relations(response: Any) -> bool:
    """Every refused field is a rule between two lists' lengths ("1 or one per segment"),
    which JSON Schema cannot state (docs/API.md, "Fuzzing")."""
    errors = response.json().get("errors") or []
    return bool(errors) and all(e.get("type") == LIST_LENGTHS for e in errors)


@schemathesis.check
def created_resources_stay_available(ctx: Any, response: Any, case: Any) -> bool | None:
    """`ensure_resource_availability`, where a 404 is about what was created: one that
    names another id (a generation named in the body of `POST /api/shots/shot_generations`
    after `POST /api/shots`) is not; and deleting a project takes everything in it along
    (its shots, generations, variants and tasks answer 404 until it is restored) although
    their paths are not below `/api/projects/{id}`, while the built-in check only sees a
    DELETE of a path prefix. The run excludes the built-in for this one (docs/API.md)."""
    internals = ctx.internals
    recorder = internals.recorder if internals is not None else None
    if response.status_code != 404 or recorder is None:
        return None
    if any(_deleted_a_project(recorder, prior) for prior in recorder.find_all_cases()):
        return None
    parent = internals.find_parent(case_id=case.id)
    made = internals.find_response(case_id=parent.id) if parent is not None else None
    if made is not None and not set(UUID_RE.findall(made.text or "")) & set(
        UUID_RE.findall(response.text or "")
    ):
        return None  # the 404 names something else than what the parent made
    return ensure_resource_availability(ctx, response, case)  # type: ignore[no-any-return]


def _deleted_a_project(recorder: Any, prior: Any) -> bool:
    if prior.operation.method.upper() != "DELETE" or not prior.operation.path.startswith(
        "/api/projects/"
    ):
        return False
    answer = recorder.find_response(case_id=prior.id)
    return answer is not None and 200 <= answer.status_code < 300
