"""Leases: expiry redelivers, stale deliveries cannot touch the new copy, renewal keeps work."""

from __future__ import annotations

import anyio

from chicory.broker import OutgoingMessage, QueueCounts
from chicory.clock import ManualClock
from chicory_memory.broker import MemoryBroker
from chicory_memory.model import DeliveryState

LEASE = 10.0  # the broker fixture's lease


async def test_expired_lease_redelivers_the_same_message_with_a_higher_count(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    message_id = await broker.publish("q", b"x")
    abandoned = broker.consume(["q"], prefetch=1)  # never closed: a killed worker
    [first] = await abandoned.fetch(1, timeout=0)
    assert await broker.counts("q") == QueueCounts(in_flight=1)
    async with broker.consume(["q"], prefetch=1) as live:
        assert list(await live.fetch(1, timeout=0)) == []
        clock.advance(LEASE - 0.01)
        assert list(await live.fetch(1, timeout=0)) == []
        clock.advance(0.01)
        assert await broker.counts("q") == QueueCounts(ready=1)
        [second] = await live.fetch(1, timeout=0)
    assert second.message_id == message_id == first.message_id
    assert (first.delivery_count, second.delivery_count) == (1, 2)


async def test_stale_ack_does_not_remove_the_redelivered_copy(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    slow = broker.consume(["q"], prefetch=1)
    [stale] = await slow.fetch(1, timeout=0)
    clock.advance(LEASE)
    async with broker.consume(["q"], prefetch=1) as other:
        [fresh] = await other.fetch(1, timeout=0)
        await stale.ack()
        await stale.nack(requeue=False)
        await stale.dead_letter("late")
        assert await broker.counts("q") == QueueCounts(in_flight=1)
        await fresh.ack()
    assert await broker.counts("q") == QueueCounts()


async def test_stale_settle_before_redelivery_leaves_the_message_ready(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    consumer = broker.consume(["q"], prefetch=1)
    [stale] = await consumer.fetch(1, timeout=0)
    clock.advance(LEASE)
    assert await broker.counts("q") == QueueCounts(ready=1)
    await stale.ack()
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_expired_lease_frees_prefetch_room(broker: MemoryBroker, clock: ManualClock) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [first] = await consumer.fetch(1, timeout=0)
        clock.advance(LEASE)
        [again] = await consumer.fetch(1, timeout=0)
    assert again.message_id == first.message_id
    assert again.delivery_count == 2


async def test_expired_messages_return_to_the_front_in_fetch_order(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(4)])
    crashed = broker.consume(["q"], prefetch=2)
    await crashed.fetch(2, timeout=0)
    clock.advance(LEASE)
    async with broker.consume(["q"], prefetch=10) as consumer:
        got = list(await consumer.fetch(10, timeout=0))
    assert [d.body for d in got] == [b"0", b"1", b"2", b"3"]
    assert [d.delivery_count for d in got] == [2, 2, 1, 1]


async def test_extend_lease_defaults_to_the_lease_time(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    worker = broker.consume(["q"], prefetch=1)
    [delivery] = await worker.fetch(1, timeout=0)
    async with broker.consume(["q"], prefetch=1) as other:
        clock.advance(LEASE - 1)
        await delivery.extend_lease()
        clock.advance(LEASE - 1)
        assert list(await other.fetch(1, timeout=0)) == []
        clock.advance(1)
        assert len(await other.fetch(1, timeout=0)) == 1


async def test_extend_lease_by_given_seconds(broker: MemoryBroker, clock: ManualClock) -> None:
    await broker.publish("q", b"x")
    worker = broker.consume(["q"], prefetch=1)
    [delivery] = await worker.fetch(1, timeout=0)
    await delivery.extend_lease(100)
    clock.advance(99)
    assert await broker.counts("q") == QueueCounts(in_flight=1)
    clock.advance(1)
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_a_held_delivery_is_never_redelivered_while_renewed(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"long task")
    worker = broker.consume(["q"], prefetch=1)
    [delivery] = await worker.fetch(1, timeout=0)
    async with broker.consume(["q"], prefetch=1) as other:
        for _ in range(20):
            clock.advance(LEASE / 2)
            await worker.extend_leases([delivery])
            assert list(await other.fetch(1, timeout=0)) == []
    await delivery.ack()
    assert await broker.counts("q") == QueueCounts()


async def test_extend_leases_renews_a_batch(broker: MemoryBroker, clock: ManualClock) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 3)
    worker = broker.consume(["q"], prefetch=3)
    batch = list(await worker.fetch(3, timeout=0))
    clock.advance(LEASE - 1)
    await worker.extend_leases(batch)
    clock.advance(LEASE - 1)
    assert await broker.counts("q") == QueueCounts(in_flight=3)


async def test_extend_lease_after_settling_does_nothing(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.ack()
        await delivery.extend_lease()
        clock.advance(LEASE)
        assert await broker.counts("q") == QueueCounts()


async def test_renewing_after_expiry_does_not_reclaim(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    consumer = broker.consume(["q"], prefetch=1)
    [delivery] = await consumer.fetch(1, timeout=0)
    clock.advance(LEASE)
    assert await broker.counts("q") == QueueCounts(ready=1)
    await delivery.extend_lease()
    assert await broker.counts("q") == QueueCounts(ready=1)
    assert delivery.state is DeliveryState.EXPIRED


async def test_waiting_fetch_picks_up_an_expired_lease() -> None:
    async with MemoryBroker(lease_seconds=0.05) as broker:
        await broker.publish("q", b"x")
        crashed = broker.consume(["q"], prefetch=1)
        [first] = await crashed.fetch(1, timeout=0)
        async with broker.consume(["q"], prefetch=1) as live:
            got = list(await live.fetch(1, timeout=30))
    assert [d.message_id for d in got] == [first.message_id]


async def test_many_settled_leases_do_not_pile_up(broker: MemoryBroker) -> None:
    async with broker.consume(["q"], prefetch=10) as consumer:
        for _ in range(500):
            await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 10)
            await consumer.ack_many(list(await consumer.fetch(10, timeout=0)))
            await anyio.lowlevel.checkpoint()
    # 5000 deliveries were leased and settled; the lease heap is compacted as it grows.
    assert len(broker._store.leases) <= 1024 + 10


async def test_renewing_to_the_same_deadline_expires_once(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    consumer = broker.consume(["q"], prefetch=1)
    [delivery] = await consumer.fetch(1, timeout=0)
    await delivery.extend_lease()  # same clock time: the same deadline again
    await delivery.extend_lease(LEASE * 2)
    await delivery.extend_lease()
    clock.advance(LEASE)
    assert await broker.counts("q") == QueueCounts(ready=1)
    assert consumer.held == 0
