"""Schemathesis against the served `/openapi.json`: no generated request may cause a 5xx.

Every operation gets positive (schema-valid) and negative (schema-violating)
requests, sent by a user whose token is valid and who owns a project, a shot
and a generation (so some ids resolve). CI runs a small sample per operation;
`DARKROOM_FUZZ_EXAMPLES` scales it up.

Every answer must also conform to the document (declared status, content type and
schema). Recorded big run (2026-11-22, this machine): `DARKROOM_FUZZ_EXAMPLES=30` sent
2,526 requests in 93 s, zero 5xx, zero violations (docs/BENCHMARKS.md, "HTTP API").
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import FailureGroup

from tests.realtime.api_harness import Server, ok, server

__all__ = ["server"]

CONFORMANCE = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = int(os.environ.get("DARKROOM_FUZZ_EXAMPLES", "4"))


def known_ids(client: Any) -> dict[str, str]:
    project = ok(client.post("/api/projects", json={"name": "Fuzz"}), 201)["id"]
    shot = ok(client.post("/api/shots", json={"project_id": project, "name": "S"}), 201)["id"]
    made = ok(
        client.post(
            "/api/generations",
            json={"project_id": project, "location": "/media/f.png", "shot_id": shot},
        ),
        201,
    )
    return {
        "project": project,
        "shot": shot,
        "generation": made["id"],
        "variant": made["variant_id"],
    }


def protocol_error(response: Any) -> bool:
    """uvicorn/h11's own 400 for a request it cannot parse (e.g. a generated header that
    makes the framing invalid): plain text, sent before any route runs."""
    kind = response.headers.get("content-type") or ""
    kind = kind[0] if isinstance(kind, list) and kind else kind  # schemathesis: a list
    return (
        response.status_code == 400
        and str(kind).startswith("text/plain")
        and "Invalid HTTP request" in response.text
    )


def fuzz(base_url: str, token: str, ids: dict[str, str], examples: int) -> Counter[int]:
    """Send `examples` positive and `examples` negative cases per operation; count statuses."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    real = {"id": st.sampled_from([ids["project"], ids["shot"], ids["generation"]])}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy, use_real=st.booleans(), real_id=real["id"])
            def send(case: Any, use_real: bool, real_id: str) -> None:
                if use_real and case.path_parameters and "id" in case.path_parameters:
                    case.path_parameters["id"] = real_id
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> "
                        f"{response.status_code}: {response.text[:300]}"
                    )
                if protocol_error(response):
                    return  # refused by the HTTP layer before the app: not the API's contract
                try:  # the answer is one the document declares, in the declared shape
                    case.validate_response(response, checks=CONFORMANCE)
                except (AssertionError, FailureGroup) as error:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> "
                        f"{response.status_code}: {str(error)[:300]}"
                    )

            try:
                send()
            except Unsatisfiable:  # e.g. no way to break a route that takes no input
                continue
    assert failures == [], "\n".join(failures[:20])
    return statuses


@pytest.mark.timeout(600)
def test_generated_requests_never_get_a_server_error(server: Server) -> None:
    user = server.user()
    token = user.headers["Authorization"].removeprefix("Bearer ")
    statuses = fuzz(server.base_url, token, known_ids(user), EXAMPLES)
    total = sum(statuses.values())
    print(f"fuzz: {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert total >= 40 * EXAMPLES and not any(s >= 500 for s in statuses)
