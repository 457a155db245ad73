"""The fan-out contract (one body, both backends), the bounded queues, and gap refill."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from darkroom.database import Database
from darkroom.wiring import build_studio
from domain.studio import Studio
from projections import all_views
from projections.engine.runner import Runner
from realtime.fanout import (
    Batch,
    BatchStream,
    Change,
    FanoutBackend,
    InProcessFanout,
)
from realtime.hub import Hub, HubSettings
from realtime.outbox import Outbox, Subscription
from realtime.protocol import SERVER_FRAMES
from realtime.redis_fanout import RedisFanout
from tests.realtime.hub_harness import redis_url  # noqa: F401  (fixture)

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio(loop_scope="session")]


def change(position: int, topic: str = "project:p", data: str = '{"id":"x"}') -> Change:
    return Change(position, topic, "generation.upserted", data)


@pytest.fixture(params=["in-process", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[FanoutBackend]:
    if request.param == "in-process":
        chosen: FanoutBackend = InProcessFanout()
    else:
        url = request.getfixturevalue("redis_url")
        chosen = RedisFanout(url, f"test:{id(request)}", max_payload=2_000)
    async with chosen:
        yield chosen


async def test_a_published_batch_reaches_every_subscribed_stream_intact(
    backend: FanoutBackend,
) -> None:
    async with backend.subscribe() as one, backend.subscribe() as two:
        await backend.publish(Batch(10, 12, (change(11), change(12, "shot:s"))))
        for stream in (one, two):
            got = await stream.get(timeout=5)
            assert got is not None and (got.after, got.upto) == (10, 12)
            assert got.changes is not None
            assert [(c.position, c.topic, c.frame) for c in got.changes] == [
                (11, "project:p", change(11).frame),
                (12, "shot:s", change(12, "shot:s").frame),
            ]


async def test_a_batch_too_large_for_the_backend_still_covers_its_range(
    backend: FanoutBackend,
) -> None:
    big = tuple(change(p, data=json.dumps({"blob": "y" * 500})) for p in range(1, 11))
    async with backend.subscribe() as stream:
        await backend.publish(Batch(0, 10, big))
        got = await stream.get(timeout=5)
    assert got is not None and (got.after, got.upto) == (0, 10)
    # Redis carries a doorbell past its payload limit; the hub reads the range itself.
    assert got.changes is None if isinstance(backend, RedisFanout) else got.changes == big


async def test_a_stream_with_nothing_to_read_answers_none_after_its_timeout(
    backend: FanoutBackend,
) -> None:
    async with backend.subscribe() as stream:
        assert await stream.get(timeout=0.05) is None


async def test_a_full_stream_drops_its_oldest_batches() -> None:
    stream = BatchStream(capacity=2)
    for n in range(4):
        stream.put(Batch(n, n + 1, ()))
    assert stream.dropped == 2
    first = await stream.get()
    assert first is not None and first.after == 2  # the hub sees a gap and refills


async def test_a_failed_listener_reaches_its_consumer() -> None:
    stream = BatchStream(capacity=4)
    stream.fail(RuntimeError("listener died"))
    with pytest.raises(RuntimeError, match="listener died"):
        await stream.get(timeout=1)


async def test_live_frames_past_the_byte_limit_condemn_a_slow_consumer() -> None:
    outbox = Outbox(limit=100)
    outbox.push("a" * 60, 60)
    outbox.push("b" * 60, 60)
    assert outbox.dead.done() and outbox.dead.result() == "slow_consumer"
    assert outbox.closed and not outbox.frames


async def test_pulled_frames_wait_for_room_instead_of_failing() -> None:
    outbox = Outbox(limit=100)
    await outbox.put("s" * 150)  # one frame may exceed the limit when the queue is empty
    waiting = asyncio.create_task(outbox.put("t" * 10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert await outbox.next() == "s" * 150
    outbox.sent()
    await asyncio.wait_for(waiting, 1)
    assert await outbox.next() == "t" * 10 and not outbox.dead.done()


async def test_a_subscription_delivers_each_position_once_and_in_increasing_order() -> None:
    outbox = Outbox(limit=10_000)
    sub = Subscription("project:p", outbox)
    sub.buffer, sub.last = None, 5
    for position in (4, 5, 6, 6, 7, 3, 9):
        sub.deliver(change(position))
    frames = [json.loads(f) for f, _, _ in outbox.frames]
    assert [f["position"] for f in frames] == [6, 7, 9]
    assert all(SERVER_FRAMES.validate_python(f).type == "change" for f in frames)


async def test_a_buffer_that_overflows_while_catching_up_is_read_again() -> None:
    sub = Subscription("project:p", Outbox(limit=100))
    for position in range(1, 20):
        sub.deliver(change(position))
    assert sub.buffer_lost and sub.buffer == []


# -- gap refill against PostgreSQL -------------------------------------------------------
@pytest.fixture(scope="module")
def studio(database: Database, schema: str) -> Iterator[Studio]:
    app = build_studio(database, schema, pool_size=2)
    yield app
    app.close()


async def test_a_hub_that_missed_batches_refills_the_gap_from_postgresql(
    database: Database, schema: str, studio: Studio
) -> None:
    runner = Runner(studio, database.conninfo, schema, all_views())
    await asyncio.to_thread(runner.catch_up)
    backend = InProcessFanout()
    settings = HubSettings(stale_after_s=60)
    async with backend, Hub(settings, database.conninfo, schema, backend, studio) as hub:
        project = studio.create_project("ann", "Gap")["project_id"]
        await asyncio.to_thread(runner.catch_up)
        outbox = Outbox(limit=1_000_000)
        sub = await hub.open(f"project:{project}", outbox)
        start = sub.last
        made = [studio.create_generation(project, "ann", f"s3://{i}.png") for i in range(3)]
        upto = await asyncio.to_thread(runner.catch_up)
        # The batch for (head, upto] never came; a heartbeat past it shows the gap.
        await backend.publish(Batch(upto, upto, ()))
        async with asyncio.timeout(5):
            while sub.last < made[-1]["position"]:
                await asyncio.sleep(0.01)
        positions = [json.loads(f)["position"] for f, _, _ in list(outbox.frames)[1:]]
        assert positions == sorted(set(positions)) and positions[0] > start
        assert hub.refills >= 1 and hub.head == upto
    runner.close()


async def test_a_hub_whose_backend_dies_keeps_serving_from_the_change_log(
    database: Database, schema: str, studio: Studio
) -> None:
    runner = Runner(studio, database.conninfo, schema, all_views())
    backend = InProcessFanout()
    settings = HubSettings(stale_after_s=60, poll_s=0.05)
    async with backend, Hub(settings, database.conninfo, schema, backend, studio) as hub:
        project = studio.create_project("bea", "Fallback")["project_id"]
        await asyncio.to_thread(runner.catch_up)
        outbox = Outbox(limit=1_000_000)
        sub = await hub.open(f"project:{project}", outbox)
        backend._fail(RuntimeError("the listener died"))
        made = studio.create_generation(project, "bea", "s3://after.png")
        await asyncio.to_thread(runner.catch_up)
        async with asyncio.timeout(5):
            while sub.last < made["position"]:
                await asyncio.sleep(0.01)
    runner.close()
