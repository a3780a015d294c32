"""Session-bound leases and queue deletion in the memory broker, on a manual clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chicory.broker import QueueCounts, delete_queue
from chicory.clock import ManualClock
from chicory.errors import CapabilityError
from chicory_memory.broker import MemoryBroker
from chicory_memory.model import DeliveryState


async def test_a_session_delivery_never_expires(clock: ManualClock) -> None:
    async with MemoryBroker(lease_model="session", clock=clock) as broker:
        await broker.publish("q", b"held")
        async with (
            broker.consume(["q"], prefetch=1) as holder,
            broker.consume(["q"], prefetch=1) as other,
        ):
            [held] = await holder.fetch(1, timeout=0)
            await held.extend_lease()  # accepted, and nothing to renew
            clock.advance(10 * 24 * 3600)
            assert await other.fetch(1, timeout=0) == []
            assert await broker.counts("q") == QueueCounts(in_flight=1)
            assert await holder.ack_many([held]) == []


async def test_severing_a_session_hands_back_and_makes_old_deliveries_stale(
    clock: ManualClock,
) -> None:
    async with MemoryBroker(lease_model="session", clock=clock) as broker:
        await broker.publish("q", b"first")
        await broker.publish("q", b"second")
        async with broker.consume(["q"], prefetch=2) as consumer:
            old = await consumer.fetch(2, timeout=0)
            await consumer.sever()
            assert [d.state for d in old] == [DeliveryState.EXPIRED] * 2
            assert await broker.counts("q") == QueueCounts(ready=2)
            again = await consumer.fetch(2, timeout=0)  # the same consumer goes on
            assert [(d.body, d.delivery_count) for d in again] == [(b"first", 2), (b"second", 2)]
            await old[0].ack()
            await old[1].nack(requeue=True)
            await old[1].dead_letter("stale")
            assert await broker.counts("q") == QueueCounts(in_flight=2)
            assert await consumer.ack_many([old[0], again[0]]) == [old[0]]
            assert await broker.counts("q") == QueueCounts(in_flight=1)


async def test_severing_a_timed_consumer_changes_nothing(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"leased")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [held] = await consumer.fetch(1, timeout=0)
        await consumer.sever()
        assert held.state is DeliveryState.HELD
        assert await consumer.ack_many([held]) == []


async def test_delete_queue_removes_ready_delayed_and_dead_messages(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("doomed", b"ready")
    await broker.publish("doomed", b"later", not_before=datetime(2100, 1, 1, tzinfo=UTC))
    await broker.publish("doomed", b"dead")
    await broker.publish("spared", b"kept")
    async with broker.consume(["doomed"], prefetch=2) as consumer:
        for delivery in await consumer.fetch(2, timeout=0):
            if delivery.body == b"dead":
                await delivery.dead_letter("dead")
    assert await broker.counts("doomed") == QueueCounts(ready=1, delayed=1, dead=1)
    await delete_queue(broker, "doomed")
    assert await broker.counts("doomed") == QueueCounts()
    assert await broker.dead_letters("doomed") == []
    assert await broker.counts("spared") == QueueCounts(ready=1)


async def test_delete_queue_needs_the_capability() -> None:
    class Plain:
        capabilities = MemoryBroker().capabilities.__class__()

    with pytest.raises(CapabilityError, match="cannot delete queues"):
        await delete_queue(Plain(), "q")  # type: ignore[arg-type]
