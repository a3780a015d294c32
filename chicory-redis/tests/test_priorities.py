"""Priorities on Redis: one stream per level, read highest first, every path keeping a
message's level (delayed, reclaimed, retried, replayed), and a queue without priorities
left exactly as it was."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import anyio
import redis.asyncio as aioredis

from chicory import Chicory, Worker
from chicory.broker import OutgoingMessage
from chicory.priority import PRIORITY_HEADER
from chicory_redis.broker import RedisBroker
from chicory_redis.delivery import RedisDelivery

BrokerFactory = Callable[..., Awaitable[RedisBroker]]

FAST = {"reclaim_interval": 0.05, "delayed_poll_interval": 0.05}


def ranked(level: int) -> dict[str, str]:
    """The headers of a message of priority ``level``."""
    return {PRIORITY_HEADER: str(level)}


async def fetch_one(broker: RedisBroker, queue: str, timeout: float = 10.0) -> RedisDelivery:
    """Fetch one delivery with a fresh consumer of prefetch 1, waiting up to ``timeout``."""
    async with broker.consume([queue], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=timeout)
        await delivery.ack()
        return delivery


async def drain(broker: RedisBroker, queue: str, count: int) -> list[bytes]:
    """Fetch and ack ``count`` messages one at a time; their bodies in delivery order."""
    bodies: list[bytes] = []
    async with broker.consume([queue], prefetch=1) as consumer:
        with anyio.fail_after(20):
            while len(bodies) < count:
                for delivery in await consumer.fetch(1, timeout=1.0):
                    bodies.append(delivery.body)
                    await delivery.ack()
    return bodies


async def test_a_worker_runs_three_interleaved_levels_highest_first(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(**FAST)
    app = Chicory(broker=broker, backend="memory://")
    ran: list[str] = []

    @app.task(name="prio.job", ignore_result=True)
    async def job(name: str) -> None:
        ran.append(name)

    published = []
    for n in range(3):
        for level in (0, 5, 9):
            name = f"p{level}-{n}"
            await job.apply_async([name], priority=level or None)
            published.append(name)
    worker = Worker(app, concurrency=1, prefetch=1, heartbeat_interval=0, fetch_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        with anyio.fail_after(30):
            while len(ran) < len(published):  # noqa: ASYNC110 (the worker sets no event)
                await anyio.sleep(0.02)
        worker.stop()
    expected = [f"p{level}-{n}" for level in (9, 5, 0) for n in range(3)]
    assert ran == expected


async def test_a_due_priority_9_message_overtakes_queued_priority_0_ones(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(**FAST)
    due = datetime.now(UTC) + timedelta(seconds=0.3)
    await broker.publish("q", b"late9", ranked(9), not_before=due)
    for n in range(3):
        await broker.publish("q", b"plain%d" % n)
    async with broker.consume(["q"], prefetch=1) as consumer:
        (first,) = await consumer.fetch(1, timeout=10)
        assert first.body == b"plain0", "the priority 9 message is not due yet"
        await first.ack()
        await anyio.sleep(max((due - datetime.now(UTC)).total_seconds(), 0) + 0.1)
        (second,) = await consumer.fetch(1, timeout=10)
        assert second.body == b"late9", "a due priority 9 message runs before priority 0 ones"
        assert second.headers[PRIORITY_HEADER] == "9"
        await second.ack()
    assert await drain(broker, "q", 2) == [b"plain1", b"plain2"]


async def test_an_expired_lease_on_a_priority_message_is_reclaimed(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(lease_seconds=0.5, **FAST)
    await broker.publish("q", b"plain")
    message_id = await broker.publish("q", b"urgent", ranked(7))
    stalled = broker.consume(["q"], prefetch=1)
    (held,) = await stalled.fetch(1, timeout=10)
    assert held.body == b"urgent"
    # Another consumer takes the entry back once the lease ran out (nobody renewed it): its
    # first fetch reclaims before it reads, so it gets the message before the plain one.
    await anyio.sleep(0.8)
    async with broker.consume(["q"], prefetch=1) as rescuer:
        with anyio.fail_after(20):
            again: list[RedisDelivery] = []
            while not again:
                again = list(await rescuer.fetch(1, timeout=1.0))
        (delivery,) = again
        assert (delivery.body, delivery.message_id) == (b"urgent", message_id)
        assert delivery.delivery_count == 2
        assert delivery.keys.level == 7, "acks and renewals must go to the level's stream"
        await delivery.ack()
    assert await stalled.ack_many([held]) == [held], "the stale holder's ack is refused"
    await stalled.close()
    counts = await broker.counts("q")
    assert (counts.ready, counts.in_flight) == (1, 0)
    assert await drain(broker, "q", 1) == [b"plain"]


async def test_retry_replay_and_nack_keep_or_change_the_level(make_broker: BrokerFactory) -> None:
    broker = await make_broker(**FAST)
    for n in range(2):
        await broker.publish("q", b"plain%d" % n)
    await broker.publish("q", b"eight", ranked(8))
    async with broker.consume(["q"], prefetch=1) as consumer:
        (first,) = await consumer.fetch(1, timeout=10)
        assert first.body == b"eight"
        await first.dead_letter("boom")
        (second,) = await consumer.fetch(1, timeout=10)
        assert second.body == b"plain0"
        # A retry carrying a priority goes to that level, ahead of plain1.
        await second.retry(b"retried", ranked(6), not_before=None)
        (third,) = await consumer.fetch(1, timeout=10)
        assert third.body == b"retried"
        await third.nack(requeue=True)  # back to level 6, still ahead of plain1
        (fourth,) = await consumer.fetch(1, timeout=10)
        assert fourth.body == b"retried"
        await fourth.ack()
    (letter,) = await broker.dead_letters("q")
    assert await broker.replay_dead_letter("q", letter.id)
    assert await drain(broker, "q", 2) == [b"eight", b"plain1"]


async def test_counts_stats_and_delete_cover_every_level(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis, prefix: str
) -> None:
    broker = await make_broker(**FAST)
    await broker.publish_many(
        "q",
        [
            *(OutgoingMessage(body=b"p0") for _ in range(2)),
            *(OutgoingMessage(body=b"p3", headers=ranked(3)) for _ in range(2)),
            OutgoingMessage(body=b"p1", headers=ranked(1)),
        ],
    )
    async with broker.consume(["q"], prefetch=1) as consumer:
        (held,) = await consumer.fetch(1, timeout=10)
        assert held.body == b"p3"
        counts = await broker.counts("q")
        assert (counts.ready, counts.in_flight) == (4, 1)
        (stats,) = await broker.queue_stats(["q"])
        assert (stats.ready, stats.in_flight) == (4, 1)
        assert stats.oldest_ready_at is not None
        await held.ack()
    await broker.delete_queue("q")
    assert [key async for key in raw_redis.scan_iter(match=f"{prefix}:{{q:q}}*")] == []


async def test_a_queue_without_priorities_gets_no_level_keys(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis, prefix: str
) -> None:
    broker = await make_broker(**FAST)
    await broker.publish_many("q", [OutgoingMessage(body=b"m%d" % n) for n in range(5)])
    await broker.publish("q", b"zero", ranked(0))
    assert await drain(broker, "q", 6) == [*(b"m%d" % n for n in range(5)), b"zero"]
    keys = {key.decode() async for key in raw_redis.scan_iter(match=f"{prefix}:{{q:q}}*")}
    assert not any(":stream:" in key or key.endswith(":levels") for key in keys), keys


async def test_a_consumer_learns_of_a_level_sent_while_it_waits(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(**FAST)
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert await consumer.fetch(1, timeout=0.2) == []
        await broker.publish("q", b"plain")
        await broker.publish("q", b"urgent", ranked(4))
        # Past delayed_poll_interval: the next fetch runs move_due first, which names level 4.
        await asyncio.sleep(0.2)
        (first,) = await consumer.fetch(1, timeout=10)
        await first.ack()
        (second,) = await consumer.fetch(1, timeout=10)
        await second.ack()
    assert [first.body, second.body] == [b"urgent", b"plain"]


async def test_garbage_in_the_levels_set_is_ignored(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    broker = await make_broker(**FAST)
    await raw_redis.sadd(broker.keys.queue("q").levels, "x", "12", "0", "-1")
    await broker.publish("q", b"plain")
    await broker.publish("q", b"two", ranked(2))
    counts = await broker.counts("q")
    assert counts.ready == 2
    assert await drain(broker, "q", 2) == [b"two", b"plain"]


async def test_a_consumer_recovers_when_its_level_streams_vanish(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    """A server restarted empty loses the level streams and their groups under a consumer
    that reads by priority: it makes them again instead of failing."""
    broker = await make_broker(**FAST)
    await broker.publish("q", b"first", ranked(3))
    async with broker.consume(["q"], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=10)
        await delivery.ack()
        k = broker.keys.queue("q")
        await raw_redis.delete(k.stream, k.at_level(3).stream, k.levels)
        await broker.publish("q", b"plain")
        await broker.publish("q", b"again", ranked(3))
        got: list[bytes] = []
        with anyio.fail_after(20):
            while len(got) < 2:
                for delivery in await consumer.fetch(1, timeout=1.0):
                    got.append(delivery.body)
                    await delivery.ack()
    assert got == [b"again", b"plain"], "levels are learnt again before the next read"
