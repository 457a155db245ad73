"""The fan-out backend between processes: batches through Redis pub/sub.

One channel per schema. Redis pub/sub is at-most-once: a batch too large for
`max_payload` travels as a doorbell (`changes=None`, the hub reads the range from
PostgreSQL), a lost one is a gap the hub refills. PostgreSQL stays the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from realtime.fanout import Batch, Change, FanoutBackend

log = logging.getLogger("darkroom.realtime.fanout")


class RedisFanout(FanoutBackend):
    """Batches through Redis pub/sub; large ones travel as doorbells (`changes=None`)."""

    def __init__(
        self, url: str, channel: str, *, max_payload: int = 64 * 1024, retry_s: float = 0.5
    ) -> None:
        super().__init__()
        self.url = url
        self.channel = channel
        self.max_payload = max_payload
        self.retry_s = retry_s
        self._client: Any = None
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def __aenter__(self) -> RedisFanout:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(self.url)
        self._listener = asyncio.create_task(self._listen(), name="redis-fanout-listener")
        await asyncio.wait_for(self.subscribed.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._client is not None:
            await self._client.aclose()

    async def publish(self, batch: Batch) -> None:
        await self._client.publish(self.channel, self.encode(batch))

    def encode(self, batch: Batch) -> str:
        if batch.changes is not None:
            text = json.dumps(
                {"a": batch.after, "u": batch.upto, "c": [c.wire() for c in batch.changes]},
                separators=(",", ":"),
            )
            if len(text) <= self.max_payload:
                return text
        return json.dumps({"a": batch.after, "u": batch.upto, "c": None})

    @staticmethod
    def decode(text: bytes | str) -> Batch:
        raw = json.loads(text)
        changes = raw["c"]
        return Batch(
            int(raw["a"]),
            int(raw["u"]),
            None if changes is None else tuple(Change(*c) for c in changes),
        )

    async def _listen(self) -> None:
        import redis.exceptions

        while True:
            try:
                await self._pump()
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                OSError,
            ) as error:
                log.warning("redis fan-out lost its connection (%s); reconnecting", error)
                await asyncio.sleep(self.retry_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the consumers must hear about it
                log.exception("redis fan-out listener failed")
                self._fail(error)
                return

    async def _pump(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            self.subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    self._deliver(self.decode(message["data"]))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
