"""Consumer group members: the names killed workers leave behind are deleted, and nothing
pending is ever deleted with them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from chicory_redis.broker import RedisBroker
from chicory_redis.consumer import RedisConsumer

BrokerFactory = Callable[..., Awaitable[RedisBroker]]

TTL = 0.3
FAST = {"reclaim_interval": 0.05, "delayed_poll_interval": 0.05, "idle_consumer_ttl": TTL}


async def _members(raw: aioredis.Redis, broker: RedisBroker, queue: str = "q") -> dict[str, int]:
    """The members of ``queue``'s group, with how many entries each has pending."""
    k = broker.keys.queue(queue)
    found: Any = await raw.xinfo_consumers(k.stream, k.group)
    return {member["name"].decode(): int(member["pending"]) for member in found}


async def _read_as(raw: aioredis.Redis, broker: RedisBroker, name: str) -> None:
    """Read one entry of ``q`` under consumer ``name``, as a worker later killed would."""
    k = broker.keys.queue("q")
    await raw.xreadgroup(k.group, name, {k.stream: ">"}, count=1)


async def _poll_until_forgotten(
    consumer: RedisConsumer, raw: aioredis.Redis, broker: RedisBroker, name: str
) -> None:
    for _ in range(40):
        await consumer.fetch(1, timeout=0.1)
        if name not in await _members(raw, broker):
            return
    raise AssertionError(f"{name} is still a member: {await _members(raw, broker)}")


async def test_a_killed_workers_name_is_deleted_once_its_work_was_reclaimed(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    broker = await make_broker(lease_seconds=TTL, **FAST)
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert await consumer.fetch(1, timeout=0.05) == []  # creates the group
        await broker.publish("q", b"job", {})
        await _read_as(raw_redis, broker, "killed-worker")
        assert (await _members(raw_redis, broker))["killed-worker"] == 1
        (reclaimed,) = await consumer.fetch(1, timeout=5)  # after its lease lapsed
        assert reclaimed.body == b"job"
        await reclaimed.ack()
        await _poll_until_forgotten(consumer, raw_redis, broker, "killed-worker")
        assert consumer.name in await _members(raw_redis, broker)


async def test_a_member_with_pending_entries_is_kept_however_long_idle(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    broker = await make_broker(**FAST)  # leases of 30 s: the stalled entry stays its own
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert await consumer.fetch(1, timeout=0.05) == []  # creates the group
        await broker.publish("q", b"job", {})
        await _read_as(raw_redis, broker, "stalled-worker")
        for _ in range(10):
            await asyncio.sleep(TTL / 2)
            assert await consumer.fetch(1, timeout=0.05) == []
        assert (await _members(raw_redis, broker))["stalled-worker"] == 1


async def test_a_live_consumer_deleted_while_idle_goes_on_working(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    broker = await make_broker(**FAST)
    await broker.publish("q", b"first", {})
    async with (
        broker.consume(["q"], prefetch=1) as idle,
        broker.consume(["q"], prefetch=1) as busy,
    ):
        (first,) = await idle.fetch(1, timeout=5)
        await first.ack()
        await asyncio.sleep(TTL)
        await _poll_until_forgotten(busy, raw_redis, broker, idle.name)
        await broker.publish("q", b"second", {})
        (second,) = await idle.fetch(1, timeout=5)
        assert second.body == b"second"
        assert not await idle.ack_many([second])  # nothing lost
        assert (await broker.counts("q")).in_flight == 0


async def test_members_are_kept_when_the_ttl_is_none(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    broker = await make_broker(**{**FAST, "idle_consumer_ttl": None})
    await broker.publish("q", b"job", {})
    async with broker.consume(["q"], prefetch=1) as consumer:
        (job,) = await consumer.fetch(1, timeout=5)
        await job.ack()
        other = broker.consume(["q"], prefetch=1)
        await asyncio.sleep(TTL * 2)
        assert await other.fetch(1, timeout=0.2) == []
        assert await _members(raw_redis, broker) == {consumer.name: 0}
        await other.close()


async def test_a_consumer_of_several_queues_forgets_members_in_each_group(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    broker = await make_broker(**FAST)
    async with broker.consume(["q", "r"], prefetch=2) as consumer:
        assert await consumer.fetch(2, timeout=0.05) == []  # creates both groups
        for queue in ("q", "r"):
            k = broker.keys.queue(queue)
            await broker.publish(queue, b"job", {})
            await raw_redis.xreadgroup(k.group, "killed-worker", {k.stream: ">"}, count=1)
            await raw_redis.xack(k.stream, k.group, *await _pending_ids(raw_redis, k))
        await asyncio.sleep(TTL)
        for _ in range(40):
            await consumer.fetch(2, timeout=0.1)
            if not await _named(raw_redis, broker, "killed-worker"):
                break
        assert await _named(raw_redis, broker, "killed-worker") == []


async def _pending_ids(raw: aioredis.Redis, k: Any) -> list[bytes]:
    found: Any = await raw.xpending_range(k.stream, k.group, "-", "+", 10)
    return [entry["message_id"] for entry in found]


async def _named(raw: aioredis.Redis, broker: RedisBroker, name: str) -> list[str]:
    """The queues among ``q`` and ``r`` whose group still has a member called ``name``."""
    return [queue for queue in ("q", "r") if name in await _members(raw, broker, queue)]
