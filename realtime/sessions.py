"""Read-your-own-writes: each principal's last acknowledged position (session consistency).

A write's answer carries `X-Darkroom-Position`. Before that answer leaves the server,
the position is remembered for the principal that wrote it (a user, whichever of
their credentials they used, or the bare service key); the principal's later reads
wait until the views they read have reached it, exactly as `?min_position=` waits,
bounded by the read timeout. Other principals have their own position, so they never
wait for it.

Where the position lives: in this process (a bounded map), and with `REDIS_URL` also
in Redis, one key per principal and schema (`darkroom:session:{schema}:{principal}`,
only ever raised, expiring a day after the principal's last write), so the next read
may go to any node. That is one Redis round trip per acknowledged write and one per
authenticated read. When Redis cannot be reached, the in-process map still answers
(a read on another node may then miss the write) and a warning is logged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.auth import Principal

log = logging.getLogger("darkroom.realtime.sessions")

# KEYS[1] the principal's key; ARGV[1] a position, ARGV[2] the key's lifetime in s.
RAISE_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return new
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return current
"""


def principal_key(principal: Principal) -> str | None:
    """Whose session a request belongs to: the user it acts for, else the service key;
    None for anonymous callers (they write nothing)."""
    if principal.user_id is not None:
        return f"user:{principal.user_id}"
    if principal.is_service:
        return "service"
    return None


class SessionPositions:
    """The last acknowledged position of each principal, in process and (optionally) Redis."""

    def __init__(
        self,
        schema: str,
        redis_url: str | None = None,
        *,
        enabled: bool = True,
        capacity: int = 100_000,
        ttl_s: int = 24 * 3600,
    ) -> None:
        self.schema = schema
        self.redis_url = redis_url
        self.enabled = enabled
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._local: OrderedDict[str, int] = OrderedDict()
        self._client: Any = None
        self._raise: Any = None

    async def __aenter__(self) -> SessionPositions:
        if self.enabled and self.redis_url:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.redis_url)
            self._raise = self._client.register_script(RAISE_SCRIPT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _redis_key(self, key: str) -> str:
        return f"darkroom:session:{self.schema}:{key}"

    async def remember(self, principal: Principal | str | None, position: int | None) -> None:
        """`position` was acknowledged to `principal` (or to a user id, `str`)."""
        key = (
            f"user:{principal}"
            if isinstance(principal, str)
            else (principal_key(principal) if principal is not None else None)
        )
        if not self.enabled or key is None or not position:
            return
        if self._local.get(key, 0) < position:
            self._local[key] = position
        self._local.move_to_end(key)
        while len(self._local) > self.capacity:
            self._local.popitem(last=False)
        if self._raise is not None:
            try:
                await self._raise(keys=[self._redis_key(key)], args=[position, self.ttl_s])
            except (OSError, ConnectionError, TimeoutError, self._redis_errors()) as error:
                log.warning(
                    "session position %s for %s not stored in Redis: %s", position, key, error
                )

    async def position(self, principal: Principal) -> int:
        """The position `principal`'s reads wait for (0: nothing to wait for)."""
        key = principal_key(principal)
        if not self.enabled or key is None:
            return 0
        local = self._local.get(key, 0)
        if self._client is None:
            return local
        try:
            shared = await self._client.get(self._redis_key(key))
        except (OSError, ConnectionError, TimeoutError, self._redis_errors()) as error:
            log.warning("session position of %s not read from Redis: %s", key, error)
            return local
        return max(local, int(shared or 0))

    @staticmethod
    def _redis_errors() -> type[Exception]:
        import redis.exceptions

        return redis.exceptions.RedisError
