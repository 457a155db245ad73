"""Schemathesis hooks for the API fuzz runs (CI's short form and `bench/api_fuzz.py`).

`positive_data_acceptance` is configured (tests/realtime/schemathesis.toml) to take 422
for schema-valid data, because some 422s depend on state no schema can hold (restoring a
project that is not deleted, a `min_position` past the log's head, a cursor this server
never issued, a shot order that misses a shot): docs/API.md lists them. This check keeps
the rest of that promise: a schema-valid request is never refused for its *fields*
(`invalid_fields`, `nul_character`), i.e. the document says everything field validation
enforces.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import GenerationMode

FIELD_CODES = ("invalid_fields", "nul_character")


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
    if response.status_code == 422 and (code := _code(response)) in FIELD_CODES:
        raise AssertionError(f"schema-valid data refused as {code}: {response.text[:500]}")
    return None
