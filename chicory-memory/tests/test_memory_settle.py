"""Settling: ack, nack, retry, dead_letter, batches, and what happens after a consumer closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chicory.broker import OutgoingMessage, QueueCounts
from chicory.clock import ManualClock
from chicory.errors import BrokerError, DeliveryStateError, MessageTooLargeError
from chicory_memory.broker import MemoryBroker

LEASE = 10.0  # the broker fixture's lease


def at(clock: ManualClock, seconds: float) -> datetime:
    """The aware-UTC moment ``seconds`` after the clock's current time."""
    return datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=seconds)


async def test_ack_removes_the_message_and_a_second_ack_is_harmless(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.ack()
        await delivery.ack()
        clock.advance(LEASE * 2)
        assert await broker.counts("q") == QueueCounts()
        assert list(await consumer.fetch(1, timeout=0)) == []


async def test_nack_requeues_at_the_back_with_a_higher_count(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"a"), OutgoingMessage(body=b"b")])
    async with broker.consume(["q"], prefetch=2) as consumer:
        [a] = await consumer.fetch(1, timeout=0)
        await a.nack()
        got = list(await consumer.fetch(2, timeout=0))
    assert [d.body for d in got] == [b"b", b"a"]
    assert [d.delivery_count for d in got] == [1, 2]
    assert got[1].message_id == a.message_id


async def test_nack_with_delay_holds_the_message_back(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.nack(delay=30)
        assert await broker.counts("q") == QueueCounts(delayed=1)
        clock.advance(29)
        assert list(await consumer.fetch(1, timeout=0)) == []
        clock.advance(1)
        [again] = await consumer.fetch(1, timeout=0)
    assert again.delivery_count == 2


async def test_nack_without_requeue_drops_the_message(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.nack(requeue=False)
    assert await broker.counts("q") == QueueCounts()


async def test_only_the_first_settle_takes_effect(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.ack()
        await delivery.nack()
        await delivery.retry(b"y", {}, not_before=None)
    assert await broker.counts("q") == QueueCounts()


async def test_retry_publishes_a_new_message_and_settles_the_old(broker: MemoryBroker) -> None:
    await broker.publish("q", b"attempt 1", {"attempt": "1"})
    async with broker.consume(["q"], prefetch=1) as consumer:
        [first] = await consumer.fetch(1, timeout=0)
        await first.retry(b"attempt 2", {"attempt": "2"}, not_before=None)
        assert await broker.counts("q") == QueueCounts(ready=1)
        [second] = await consumer.fetch(1, timeout=0)
    assert second.message_id != first.message_id
    assert second.delivery_count == 1
    assert second.body == b"attempt 2"
    assert dict(second.headers) == {"attempt": "2"}


async def test_retry_with_not_before_is_delayed(broker: MemoryBroker, clock: ManualClock) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [first] = await consumer.fetch(1, timeout=0)
        await first.retry(b"x", {}, not_before=at(clock, 5))
        assert await broker.counts("q") == QueueCounts(delayed=1)
        clock.advance(5)
        assert len(await consumer.fetch(1, timeout=0)) == 1


async def test_failed_retry_changes_nothing(clock: ManualClock) -> None:
    async with MemoryBroker(clock=clock, max_body_bytes=8) as broker:
        await broker.publish("q", b"x")
        async with broker.consume(["q"], prefetch=1) as consumer:
            [delivery] = await consumer.fetch(1, timeout=0)
            with pytest.raises(MessageTooLargeError):
                await delivery.retry(b"far too large", {}, not_before=None)
            with pytest.raises(ValueError, match="naive"):
                await delivery.retry(b"x", {}, not_before=datetime(2030, 1, 1))
            assert await broker.counts("q") == QueueCounts(in_flight=1)
            await delivery.ack()


async def test_dead_letter_moves_the_message_with_its_reason(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"poison", {"task": "t"})
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.dead_letter("bad arguments")
        await delivery.dead_letter("again")
    assert await broker.counts("q") == QueueCounts(dead=1)
    [letter] = await broker.dead_letters("q")
    assert letter.queue == "q"
    assert letter.body == b"poison"
    assert dict(letter.headers) == {"task": "t"}
    assert letter.reason == "bad arguments"
    assert letter.delivery_count == 1
    assert letter.dead_at == datetime.fromtimestamp(clock.time(), UTC)
    assert letter.dead_at.tzinfo is not None


async def test_dead_letter_after_ack_records_a_copy(broker: MemoryBroker) -> None:
    await broker.publish("q", b"at most once")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.ack()
        await delivery.dead_letter("task failed after the pre-ack")
        await delivery.dead_letter("twice")
    assert await broker.counts("q") == QueueCounts(dead=1)
    [letter] = await broker.dead_letters("q")
    assert letter.reason == "task failed after the pre-ack"


async def test_dead_letter_after_nack_does_nothing(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.nack(requeue=False)
        await delivery.dead_letter("late")
    assert await broker.counts("q") == QueueCounts()


async def test_ack_many_acks_a_batch(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 5)
    async with broker.consume(["q"], prefetch=5) as consumer:
        await consumer.ack_many(list(await consumer.fetch(5, timeout=0)))
    assert await broker.counts("q") == QueueCounts()


async def test_ack_many_refuses_another_consumers_delivery(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 2)
    async with (
        broker.consume(["q"], prefetch=1) as one,
        broker.consume(["q"], prefetch=1) as two,
    ):
        mine = list(await one.fetch(1, timeout=0))
        theirs = list(await two.fetch(1, timeout=0))
        with pytest.raises(DeliveryStateError, match="another consumer"):
            await one.ack_many(mine + theirs)
        assert await broker.counts("q") == QueueCounts(in_flight=2)


async def test_a_delivery_of_another_broker_is_refused(broker: MemoryBroker) -> None:
    async with MemoryBroker() as elsewhere:
        await elsewhere.publish("q", b"x")
        async with elsewhere.consume(["q"], prefetch=1) as foreign:
            batch = list(await foreign.fetch(1, timeout=0))
        async with broker.consume(["q"], prefetch=1) as consumer:
            with pytest.raises(DeliveryStateError):
                await consumer.ack_many(batch)


async def test_negative_nack_delay_is_rejected(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        with pytest.raises(ValueError, match="delay"):
            await delivery.nack(delay=-1)
        with pytest.raises(ValueError, match="seconds"):
            await delivery.extend_lease(0)


# -- closing -------------------------------------------------------------------------------


async def test_close_hands_back_unsettled_deliveries_at_once_in_order(
    broker: MemoryBroker,
) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(3)])
    consumer = broker.consume(["q"], prefetch=2)
    await consumer.fetch(2, timeout=0)
    await consumer.close()
    assert await broker.counts("q") == QueueCounts(ready=3)
    async with broker.consume(["q"], prefetch=3) as other:
        got = list(await other.fetch(3, timeout=0))
    assert [d.body for d in got] == [b"0", b"1", b"2"]
    assert [d.delivery_count for d in got] == [2, 2, 1]


async def test_settling_after_close_raises_unless_already_settled(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 2)
    consumer = broker.consume(["q"], prefetch=2)
    settled, unsettled = await consumer.fetch(2, timeout=0)
    await settled.ack()
    await consumer.close()
    await consumer.close()
    await settled.ack()
    await settled.nack()
    with pytest.raises(DeliveryStateError, match="closed"):
        await unsettled.ack()
    with pytest.raises(DeliveryStateError):
        await unsettled.nack()
    with pytest.raises(DeliveryStateError):
        await unsettled.retry(b"x", {}, not_before=None)
    with pytest.raises(DeliveryStateError):
        await unsettled.dead_letter("x")
    with pytest.raises(DeliveryStateError):
        await consumer.ack_many([unsettled])
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_broker_close_closes_consumers_and_keeps_messages(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    consumer = broker.consume(["q"], prefetch=1)
    [delivery] = await consumer.fetch(1, timeout=0)
    await broker.close()
    await broker.close()
    assert consumer.closed
    with pytest.raises(DeliveryStateError):
        await delivery.ack()
    with pytest.raises(BrokerError, match="closed"):
        await consumer.fetch(1, timeout=0)
    await broker.connect()
    await broker.connect()
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_operations_need_a_connected_broker(clock: ManualClock) -> None:
    broker = MemoryBroker(clock=clock)
    with pytest.raises(BrokerError, match="not connected"):
        await broker.publish("q", b"x")
    async with broker:
        await broker.publish("q", b"x")
    with pytest.raises(BrokerError, match="not connected"):
        await broker.publish("q", b"x")
    with pytest.raises(BrokerError):
        await broker.publish_many("q", [OutgoingMessage(body=b"x")])
    with pytest.raises(BrokerError):
        broker.consume(["q"], prefetch=1)
    with pytest.raises(BrokerError):
        await broker.counts("q")
    with pytest.raises(BrokerError):
        await broker.dead_letters("q")
