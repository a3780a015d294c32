"""Leases: renewal, reclaiming a dead consumer's work, and what a stale consumer may do."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import chicory_redis
from chicory.broker import OutgoingMessage, QueueCounts
from chicory_redis.broker import RedisBroker
from chicory_redis.delivery import RedisDelivery

BrokerFactory = Callable[..., Awaitable[RedisBroker]]


LEASE = 0.5
FAST = {"lease_seconds": LEASE, "reclaim_interval": 0.05, "delayed_poll_interval": 0.05}

_KILLED_WORKER = """
import asyncio, sys
from chicory_redis.broker import RedisBroker

async def main() -> None:
    broker = RedisBroker.from_url(sys.argv[1], key_prefix=sys.argv[2], lease_seconds=0.5)
    await broker.connect()
    consumer = broker.consume(["q"], prefetch=10)
    got = await consumer.fetch(10, timeout=5)
    print(",".join(d.message_id for d in got), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_consumers_work_is_reclaimed_after_the_lease(
    make_broker: BrokerFactory, prefix: str, redis_url: str
) -> None:
    """A consumer killed with SIGKILL never hands back; another takes its work over."""
    broker = await make_broker(**FAST)
    ids = await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(3)])
    env = dict(os.environ)
    src = str(Path(chicory_redis.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WORKER,
        redis_url,
        prefix,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(worker.stdout.readline(), timeout=20)
        assert line.decode().strip().split(",") == ids
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert await broker.counts("q") == QueueCounts(in_flight=3)
    async with broker.consume(["q"], prefetch=10) as consumer:
        got = await consumer.fetch(10, timeout=5)
        while len(got) < 3:
            got = [*got, *await consumer.fetch(10, timeout=5)]
        assert sorted(d.message_id for d in got) == sorted(ids)
        assert {d.delivery_count for d in got} == {2}
        assert broker.reclaimed_total == 3
        await consumer.ack_many(got)
    assert await broker.counts("q") == QueueCounts()


async def test_renewed_lease_is_not_reclaimed_while_another_consumer_reclaims(
    make_broker: BrokerFactory,
) -> None:
    holder_broker = await make_broker(**FAST)
    thief_broker = await make_broker(**FAST)
    await holder_broker.publish("q", b"long task")
    holder = holder_broker.consume(["q"], prefetch=1)
    thief = thief_broker.consume(["q"], prefetch=1)
    [held] = await holder.fetch(1, timeout=1)
    for _ in range(8):  # ~2.4 lease times in total, renewing every 0.2 s
        await holder.extend_leases([held])
        assert await thief.fetch(1, timeout=0.2) == []
    await held.extend_lease()
    assert await thief.fetch(1, timeout=0.2) == []
    assert thief_broker.reclaimed_total == 0
    # Stop renewing: the other consumer reclaims it after the lease.
    [stolen] = await thief.fetch(1, timeout=5)
    assert stolen.message_id == held.message_id
    assert stolen.delivery_count == 2
    assert thief_broker.reclaimed_total == 1
    # The stale holder can no longer settle or renew the entry; the new owner can.
    await held.ack()
    await holder.extend_leases([held])
    assert await holder_broker.counts("q") == QueueCounts(in_flight=1)
    await stolen.ack()
    assert await holder_broker.counts("q") == QueueCounts()


async def test_stale_consumer_cannot_requeue_or_retry_a_reclaimed_entry(
    make_broker: BrokerFactory,
) -> None:
    one = await make_broker(**FAST)
    two = await make_broker(**FAST)
    await one.publish("q", b"x")
    first = one.consume(["q"], prefetch=2)
    second = two.consume(["q"], prefetch=2)
    [stale] = await first.fetch(1, timeout=1)
    [fresh] = await second.fetch(1, timeout=5)
    await stale.nack(requeue=True)
    await stale.retry(b"fork", {}, not_before=None)
    await stale.dead_letter("too late")
    assert await one.counts("q") == QueueCounts(in_flight=1)
    await fresh.ack()
    assert await one.counts("q") == QueueCounts()


async def test_own_expired_entry_is_redelivered_as_a_new_delivery(
    make_broker: BrokerFactory,
) -> None:
    """A lapsed lease frees its prefetch room: an unsettleable delivery cannot stall fetching."""
    broker = await make_broker(**FAST)
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [old] = await consumer.fetch(1, timeout=1)
        assert await consumer.fetch(1, timeout=0) == []  # no room while the lease runs
        [new] = await consumer.fetch(1, timeout=5)
        assert (new.message_id, new.delivery_count) == (old.message_id, 2)
        await old.ack()  # expired: does nothing
        assert await broker.counts("q") == QueueCounts(in_flight=1)
        await new.ack()
    assert await broker.counts("q") == QueueCounts()


async def test_reclaim_dead_letters_past_max_deliveries(make_broker: BrokerFactory) -> None:
    broker = await make_broker(max_deliveries=1, **FAST)
    other = await make_broker(max_deliveries=1, **FAST)
    await broker.publish("q", b"crashes its worker")
    abandoned = broker.consume(["q"], prefetch=1)
    assert len(await abandoned.fetch(1, timeout=1)) == 1
    async with other.consume(["q"], prefetch=1) as consumer:
        assert await consumer.fetch(1, timeout=3 * LEASE) == []
    [dead] = await other.dead_letters("q")
    assert "max_deliveries=1" in dead.reason
    assert await other.counts("q") == QueueCounts(dead=1)


async def test_concurrent_reclaimers_never_both_get_an_entry(make_broker: BrokerFactory) -> None:
    broker = await make_broker(**FAST)
    ids = await broker.publish_many("q", [OutgoingMessage(body=b"x") for _ in range(20)])
    abandoned = broker.consume(["q"], prefetch=20)
    assert len(await abandoned.fetch(20, timeout=1)) == 20
    reclaimers = [await make_broker(**FAST) for _ in range(4)]
    consumers = [b.consume(["q"], prefetch=20) for b in reclaimers]
    await asyncio.sleep(LEASE)
    # Each fetch is shorter than a lease, so nothing claimed here can expire again.
    batches = await asyncio.gather(*(c.fetch(20, timeout=0.2) for c in consumers))
    got = [d.message_id for batch in batches for d in batch]
    assert len(got) == len(set(got))
    assert sorted(got) == sorted(ids)
    assert sum(b.reclaimed_total for b in reclaimers) == 20
    for consumer, batch in zip(consumers, batches, strict=True):
        await consumer.ack_many(batch)


async def test_batch_settles_touch_only_the_entries_still_owned(
    make_broker: BrokerFactory,
) -> None:
    """ack_many and extend_leases over a batch where another consumer reclaimed some."""
    holder_broker = await make_broker(**FAST)
    thief_broker = await make_broker(**FAST)
    await holder_broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(4)])
    holder = holder_broker.consume(["q"], prefetch=4)
    thief = thief_broker.consume(["q"], prefetch=4)
    held = await holder.fetch(4, timeout=1)
    kept, lost = held[0::2], held[1::2]
    stolen: list[object] = []
    for _ in range(10):  # renew only half: the thief reclaims the other half
        await holder.extend_leases(kept)
        stolen += await thief.fetch(4, timeout=0.2)
        if len(stolen) == 2:
            break
    assert sorted(d.message_id for d in stolen) == sorted(d.message_id for d in lost)
    await holder.extend_leases(held)  # renews only what it still owns
    await holder.ack_many(held)  # acks only what it still owns
    assert await holder_broker.counts("q") == QueueCounts(in_flight=2)
    await thief.ack_many(stolen)
    assert await holder_broker.counts("q") == QueueCounts()


async def test_ack_many_acks_a_reclaimed_entry_older_than_the_rest_of_the_batch(
    make_broker: BrokerFactory,
) -> None:
    """The ack script's range comes from fetch order, a reclaimed entry breaks that order:
    entries outside the range are still acked, each checked on its own."""
    holder_broker = await make_broker(**FAST)
    thief_broker = await make_broker(**FAST)
    await holder_broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(3)])
    holder = holder_broker.consume(["q"], prefetch=1)
    thief = thief_broker.consume(["q"], prefetch=3)
    [abandoned] = await holder.fetch(1, timeout=1)  # the oldest entry; never renewed
    own = await thief.fetch(2, timeout=1)
    reclaimed: list[RedisDelivery] = []
    for _ in range(20):
        await thief.extend_leases(own)
        reclaimed += await thief.fetch(1, timeout=0.2)
        if reclaimed:
            break
    assert [d.message_id for d in reclaimed] == [abandoned.message_id]
    assert await holder_broker.counts("q") == QueueCounts(in_flight=3)
    await thief.ack_many([*own, *reclaimed])  # fetch order: the oldest entry came last
    assert await holder_broker.counts("q") == QueueCounts()
    await holder.ack_many([abandoned])  # no longer the holder's: does nothing
    assert await holder_broker.counts("q") == QueueCounts()
