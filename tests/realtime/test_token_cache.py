"""Verified JWTs are cached, bounded and never past their `exp`; access tokens are not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import jwt
import pytest
from starlette.requests import Request

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.studio import Studio
from realtime.auth import Authenticator, issue_jwt
from realtime.errors import TokenExpiredError, UnauthenticatedError

SECRET = "token-cache-secret-of-at-least-32-bytes"
SERVICE_KEY = "token-cache-service-key"


@pytest.fixture(scope="module")
def studios(database: Database, schema: str) -> Iterator[tuple[Studio, Studio]]:
    """Two nodes on one event store."""
    first, second = build_studio(database, schema), build_studio(database, schema)
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def auth(studios: tuple[Studio, Studio]) -> Authenticator:
    """A node's authenticator with an empty cache."""
    return Authenticator(studios[0], SECRET, SERVICE_KEY, any_subject=True)


def request_with(token: str) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def authenticate(auth: Authenticator, token: str) -> str | None:
    return asyncio.run(auth.authenticate(request_with(token))).user_id


def cached_twice(auth: Authenticator, token: str, user: str) -> None:
    """The first use verifies and caches the token, the second is a hit."""
    hits = auth.jwt_cache.hits
    assert authenticate(auth, token) == user and auth.jwt_cache.hits == hits
    assert authenticate(auth, token) == user and auth.jwt_cache.hits == hits + 1


def test_a_verified_jwt_is_answered_from_the_cache_the_second_time(auth: Authenticator) -> None:
    cached_twice(auth, issue_jwt(SECRET, "cache-alice"), "cache-alice")
    forged = issue_jwt("another-secret-of-at-least-32-bytes!", "cache-alice")
    with pytest.raises(UnauthenticatedError):
        authenticate(auth, forged)
    assert len(auth.jwt_cache) == 1


def test_an_expired_jwt_is_refused_even_when_it_was_cached(auth: Authenticator) -> None:
    exp = int(time.time()) + 2
    token = jwt.encode({"sub": "cache-bob", "exp": exp}, SECRET, algorithm="HS256")
    cached_twice(auth, token, "cache-bob")
    time.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(TokenExpiredError):
        authenticate(auth, token)
    assert len(auth.jwt_cache) == 0


def test_the_cache_keeps_at_most_its_size_dropping_the_least_recently_used(
    auth: Authenticator,
) -> None:
    auth.jwt_cache.size = 3
    tokens = [issue_jwt(SECRET, f"cache-user-{i}") for i in range(5)]
    for token in tokens[:3]:
        authenticate(auth, token)
    authenticate(auth, tokens[0])  # the first is used again: the second is now the oldest
    for token in tokens[3:]:
        authenticate(auth, token)
    assert len(auth.jwt_cache) == 3
    hits = auth.jwt_cache.hits
    authenticate(auth, tokens[0])
    authenticate(auth, tokens[1])
    assert auth.jwt_cache.hits == hits + 1  # the first was kept, the second dropped


def test_a_cached_jwt_is_checked_again_when_the_subject_rule_changes(auth: Authenticator) -> None:
    token = issue_jwt(SECRET, "not-a-uuid")
    assert authenticate(auth, token) == "not-a-uuid"
    auth.any_subject = False
    with pytest.raises(UnauthenticatedError, match="not a UUID"):
        authenticate(auth, token)


def test_a_revoked_access_token_is_refused_on_the_next_request_on_another_node(
    studios: tuple[Studio, Studio],
) -> None:
    first, second = studios
    node_a = Authenticator(first, SECRET, SERVICE_KEY, any_subject=True)
    node_b = Authenticator(second, SECRET, SERVICE_KEY, any_subject=True)
    issued = first.issue_token("cache-carol", "laptop")
    for _ in range(2):
        assert authenticate(node_a, issued["token"]) == "cache-carol"
        assert authenticate(node_b, issued["token"]) == "cache-carol"
    second.revoke_token("cache-carol", issued["token_id"])
    for node in (node_a, node_b):
        with pytest.raises(UnauthenticatedError, match="revoked"):
            authenticate(node, issued["token"])
    assert len(node_a.jwt_cache) == len(node_b.jwt_cache) == 0
