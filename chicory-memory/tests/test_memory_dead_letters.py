"""Dead letters: max_deliveries stops poison messages; list, replay, delete, purge."""

from __future__ import annotations

from chicory.broker import OutgoingMessage, QueueCounts
from chicory.clock import ManualClock
from chicory_memory.broker import MemoryBroker

LEASE = 10.0


async def test_crash_looping_message_is_dead_lettered_after_max_deliveries(
    clock: ManualClock,
) -> None:
    async with MemoryBroker(lease_seconds=LEASE, max_deliveries=3, clock=clock) as broker:
        await broker.publish("q", b"poison", {"task": "t"})
        counts = []
        for _ in range(3):
            crashed = broker.consume(["q"], prefetch=1)  # a worker that dies mid-task
            [delivery] = await crashed.fetch(1, timeout=0)
            counts.append(delivery.delivery_count)
            clock.advance(LEASE)
        assert counts == [1, 2, 3]
        assert await broker.counts("q") == QueueCounts(dead=1)
        async with broker.consume(["q"], prefetch=1) as consumer:
            assert list(await consumer.fetch(1, timeout=0)) == []
        [letter] = await broker.dead_letters("q")
    assert letter.reason == "delivered 3 times without being settled (max_deliveries=3)"
    assert letter.delivery_count == 3
    assert letter.body == b"poison"
    assert dict(letter.headers) == {"task": "t"}


async def test_delivery_count_carries_across_nack_expiry_and_close(clock: ManualClock) -> None:
    async with MemoryBroker(lease_seconds=LEASE, max_deliveries=4, clock=clock) as broker:
        await broker.publish("q", b"x")
        seen = []
        consumer = broker.consume(["q"], prefetch=1)
        [d] = await consumer.fetch(1, timeout=0)
        seen.append(d.delivery_count)
        await d.nack()
        [d] = await consumer.fetch(1, timeout=0)
        seen.append(d.delivery_count)
        clock.advance(LEASE)
        [d] = await consumer.fetch(1, timeout=0)
        seen.append(d.delivery_count)
        await consumer.close()
        consumer = broker.consume(["q"], prefetch=1)
        [d] = await consumer.fetch(1, timeout=0)
        seen.append(d.delivery_count)
        await d.nack(delay=5)
        assert seen == [1, 2, 3, 4]
        assert await broker.counts("q") == QueueCounts(dead=1)


async def test_without_max_deliveries_redelivery_goes_on(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x")
    for expected in range(1, 21):
        consumer = broker.consume(["q"], prefetch=1)
        [delivery] = await consumer.fetch(1, timeout=0)
        assert delivery.delivery_count == expected
        clock.advance(LEASE)
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_dead_letters_are_listed_oldest_first_with_a_limit(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(5)])
    async with broker.consume(["q"], prefetch=5) as consumer:
        for delivery in await consumer.fetch(5, timeout=0):
            await delivery.dead_letter(f"reason {delivery.body.decode()}")
    letters = await broker.dead_letters("q", limit=3)
    assert [letter.body for letter in letters] == [b"0", b"1", b"2"]
    assert len({letter.id for letter in await broker.dead_letters("q")}) == 5
    assert await broker.dead_letters("q", limit=0) == []
    assert await broker.dead_letters("elsewhere") == []


async def test_replay_puts_a_fresh_ready_message_back(broker: MemoryBroker) -> None:
    original_id = await broker.publish("q", b"x", {"h": "v"})
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.dead_letter("oops")
        [letter] = await broker.dead_letters("q")
        assert await broker.replay_dead_letter("q", letter.id) is True
        assert await broker.replay_dead_letter("q", letter.id) is False
        assert await broker.counts("q") == QueueCounts(ready=1)
        [replayed] = await consumer.fetch(1, timeout=0)
    assert replayed.body == b"x"
    assert dict(replayed.headers) == {"h": "v"}
    assert replayed.delivery_count == 1
    assert replayed.message_id != original_id


async def test_replay_goes_to_the_back_of_the_queue(broker: MemoryBroker) -> None:
    await broker.publish("q", b"dead")
    async with broker.consume(["q"], prefetch=2) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
        await delivery.dead_letter("oops")
        await broker.publish("q", b"newer")
        [letter] = await broker.dead_letters("q")
        await broker.replay_dead_letter("q", letter.id)
        got = list(await consumer.fetch(2, timeout=0))
    assert [d.body for d in got] == [b"newer", b"dead"]


async def test_delete_and_purge(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 3)
    async with broker.consume(["q"], prefetch=3) as consumer:
        for delivery in await consumer.fetch(3, timeout=0):
            await delivery.dead_letter("x")
    first, *_ = await broker.dead_letters("q")
    assert await broker.delete_dead_letter("q", first.id) is True
    assert await broker.delete_dead_letter("q", first.id) is False
    assert await broker.replay_dead_letter("q", first.id) is False
    assert await broker.purge_dead_letters("q") == 2
    assert await broker.purge_dead_letters("q") == 0
    assert await broker.counts("q") == QueueCounts()
    assert await broker.delete_dead_letter("elsewhere", "nope") is False
    assert await broker.replay_dead_letter("elsewhere", "nope") is False
    assert await broker.purge_dead_letters("elsewhere") == 0
