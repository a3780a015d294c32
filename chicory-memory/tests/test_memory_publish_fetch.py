"""Publishing and fetching: FIFO, ids, prefetch, waiting, fairness, delayed delivery."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from chicory.broker import Delivery, OutgoingMessage, QueueCounts
from chicory.clock import ManualClock
from chicory.errors import BrokerError, MessageTooLargeError
from chicory_memory.broker import MemoryBroker


def at(clock: ManualClock, seconds: float) -> datetime:
    """The aware-UTC moment ``seconds`` after the clock's current time."""
    return datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=seconds)


def bodies(deliveries: Sequence[Delivery]) -> list[bytes]:
    return [d.body for d in deliveries]


async def test_one_consumer_receives_a_queue_in_publish_order(broker: MemoryBroker) -> None:
    for i in range(5):
        await broker.publish("q", str(i).encode())
    async with broker.consume(["q"], prefetch=10) as consumer:
        got = list(await consumer.fetch(10, timeout=0))
    assert bodies(got) == [b"0", b"1", b"2", b"3", b"4"]


async def test_delivery_carries_the_published_message(broker: MemoryBroker) -> None:
    headers = {"task": "t", "attempt": "1"}
    message_id = await broker.publish("q", b"body", headers)
    headers["task"] = "changed after publish"
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
    assert isinstance(delivery, Delivery)
    assert delivery.message_id == message_id
    assert delivery.queue == "q"
    assert delivery.body == b"body"
    assert dict(delivery.headers) == {"task": "t", "attempt": "1"}
    assert delivery.delivery_count == 1


async def test_message_ids_are_unique_strings(broker: MemoryBroker) -> None:
    ids = [await broker.publish("q", b"x") for _ in range(50)]
    ids += await broker.publish_many("other", [OutgoingMessage(body=b"y")] * 50)
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 100


async def test_publish_without_headers_gives_empty_headers(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=0)
    assert dict(delivery.headers) == {}


async def test_fetch_returns_a_batch_up_to_max_count(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(10)])
    async with broker.consume(["q"], prefetch=100) as consumer:
        first = await consumer.fetch(4, timeout=0)
        rest = await consumer.fetch(100, timeout=0)
    assert bodies(list(first)) == [b"0", b"1", b"2", b"3"]
    assert len(rest) == 6


async def test_fetch_of_zero_returns_nothing(broker: MemoryBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert list(await consumer.fetch(0, timeout=0)) == []
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_a_consumer_never_holds_more_than_prefetch(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 10)
    async with broker.consume(["q"], prefetch=3) as consumer:
        held = list(await consumer.fetch(10, timeout=0))
        assert len(held) == 3
        assert list(await consumer.fetch(10, timeout=0)) == []
        await held[0].ack()
        assert len(await consumer.fetch(10, timeout=0)) == 1
        assert await broker.counts("q") == QueueCounts(ready=6, in_flight=3)


async def test_fetch_times_out_empty(broker: MemoryBroker) -> None:
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert list(await consumer.fetch(1, timeout=0.01)) == []


async def test_waiting_fetch_wakes_on_publish(broker: MemoryBroker) -> None:
    got: list[Delivery] = []
    async with broker.consume(["q"], prefetch=1) as consumer:

        async def fetch() -> None:
            got.extend(await consumer.fetch(1, timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            await anyio.wait_all_tasks_blocked()
            await broker.publish("q", b"hello")
    assert bodies(got) == [b"hello"]


async def test_waiting_fetch_wakes_when_prefetch_room_frees(broker: MemoryBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"a"), OutgoingMessage(body=b"b")])
    got: list[Delivery] = []
    async with broker.consume(["q"], prefetch=1) as consumer:
        [first] = await consumer.fetch(1, timeout=0)

        async def fetch() -> None:
            got.extend(await consumer.fetch(1, timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            await anyio.wait_all_tasks_blocked()
            await first.ack()
    assert bodies(got) == [b"b"]


async def test_waiting_fetch_returns_empty_when_its_consumer_closes(broker: MemoryBroker) -> None:
    consumer = broker.consume(["q"], prefetch=1)
    results: list[list[Delivery]] = []

    async def fetch() -> None:
        results.append(list(await consumer.fetch(1, timeout=30)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(fetch)
        await anyio.wait_all_tasks_blocked()
        await consumer.close()
    assert results == [[]]


async def test_cancelled_fetch_loses_nothing(broker: MemoryBroker) -> None:
    async with broker.consume(["q"], prefetch=1) as consumer:
        with anyio.move_on_after(0.01):
            await consumer.fetch(1, timeout=30)
        await broker.publish("q", b"x")
        assert bodies(list(await consumer.fetch(1, timeout=0))) == [b"x"]


async def test_concurrent_consumers_never_share_a_delivery(broker: MemoryBroker) -> None:
    received: list[str] = []

    async def work() -> None:
        async with broker.consume(["q"], prefetch=7) as consumer:
            while True:
                batch = await consumer.fetch(7, timeout=0.05)
                if not batch:
                    return
                received.extend(d.message_id for d in batch)
                await consumer.ack_many(batch)
                await anyio.lowlevel.checkpoint()

    ids = await broker.publish_many("q", [OutgoingMessage(body=b"x")] * 300)
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(work)
    assert sorted(received) == sorted(ids)
    assert await broker.counts("q") == QueueCounts()


async def test_several_queues_are_served_round_robin(broker: MemoryBroker) -> None:
    await broker.publish_many("a", [OutgoingMessage(body=b"a%d" % i) for i in range(3)])
    await broker.publish_many("b", [OutgoingMessage(body=b"b%d" % i) for i in range(3)])
    async with broker.consume(["a", "b"], prefetch=100) as consumer:
        one_by_one = [d.body for _ in range(4) for d in await consumer.fetch(1, timeout=0)]
        rest = await consumer.fetch(100, timeout=0)
    assert one_by_one == [b"a0", b"b0", b"a1", b"b1"]
    assert bodies(list(rest)) == [b"a2", b"b2"]


async def test_round_robin_skips_empty_queues_fairly(broker: MemoryBroker) -> None:
    await broker.publish_many("a", [OutgoingMessage(body=b"a")] * 3)
    await broker.publish_many("c", [OutgoingMessage(body=b"c")] * 3)
    async with broker.consume(["a", "b", "c"], prefetch=100) as consumer:
        order = [d.body for _ in range(6) for d in await consumer.fetch(1, timeout=0)]
    assert order == [b"a", b"c", b"a", b"c", b"a", b"c"]


async def test_consume_rejects_bad_arguments(broker: MemoryBroker) -> None:
    with pytest.raises(TypeError):
        broker.consume("q", prefetch=1)
    with pytest.raises(ValueError, match="at least one queue"):
        broker.consume([], prefetch=1)
    with pytest.raises(ValueError, match="prefetch"):
        broker.consume(["q"], prefetch=0)


async def test_fetch_on_a_closed_consumer_raises(broker: MemoryBroker) -> None:
    consumer = broker.consume(["q"], prefetch=1)
    await consumer.close()
    with pytest.raises(BrokerError, match="closed"):
        await consumer.fetch(1, timeout=0)


# -- delayed delivery ----------------------------------------------------------------------


async def test_delayed_message_is_not_fetched_before_its_time(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"later", not_before=at(clock, 60))
    assert await broker.counts("q") == QueueCounts(delayed=1)
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert list(await consumer.fetch(1, timeout=0)) == []
        clock.advance(59.9)
        assert list(await consumer.fetch(1, timeout=0)) == []
        clock.advance(0.1)
        got = list(await consumer.fetch(1, timeout=0))
    assert bodies(got) == [b"later"]
    assert got[0].delivery_count == 1


async def test_delayed_message_counts_as_ready_once_due(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"later", not_before=at(clock, 5))
    clock.advance(5)
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_not_before_in_the_past_is_ready_now(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"x", not_before=at(clock, -5))
    assert await broker.counts("q") == QueueCounts(ready=1)


async def test_delayed_messages_become_ready_in_due_order(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    await broker.publish("q", b"third", not_before=at(clock, 30))
    await broker.publish("q", b"first", not_before=at(clock, 10))
    await broker.publish("q", b"second", not_before=at(clock, 20))
    clock.advance(30)
    async with broker.consume(["q"], prefetch=3) as consumer:
        got = list(await consumer.fetch(3, timeout=0))
    assert bodies(got) == [b"first", b"second", b"third"]


async def test_naive_not_before_is_rejected(broker: MemoryBroker) -> None:
    with pytest.raises(ValueError, match="naive"):
        await broker.publish("q", b"x", not_before=datetime(2030, 1, 1))
    assert await broker.counts("q") == QueueCounts()


async def test_waiting_fetch_picks_up_a_message_falling_due() -> None:
    async with MemoryBroker() as broker:
        soon = datetime.now(UTC) + timedelta(seconds=0.05)
        await broker.publish("q", b"soon", not_before=soon)
        async with broker.consume(["q"], prefetch=1) as consumer:
            got = list(await consumer.fetch(1, timeout=30))
    assert bodies(got) == [b"soon"]


# -- publish_many and size limits ----------------------------------------------------------


async def test_publish_many_returns_ids_in_order(broker: MemoryBroker, clock: ManualClock) -> None:
    ids = await broker.publish_many(
        "q",
        [
            OutgoingMessage(body=b"a"),
            OutgoingMessage(body=b"b", not_before=at(clock, 10)),
            OutgoingMessage(body=b"c", headers={"h": "v"}),
        ],
    )
    assert await broker.counts("q") == QueueCounts(ready=2, delayed=1)
    async with broker.consume(["q"], prefetch=3) as consumer:
        got = list(await consumer.fetch(3, timeout=0))
    assert [d.message_id for d in got] == [ids[0], ids[2]]
    assert dict(got[1].headers) == {"h": "v"}


async def test_publish_many_is_all_or_nothing(clock: ManualClock) -> None:
    async with MemoryBroker(clock=clock, max_body_bytes=4) as broker:
        with pytest.raises(MessageTooLargeError):
            await broker.publish_many(
                "q", [OutgoingMessage(body=b"ok"), OutgoingMessage(body=b"too big")]
            )
        with pytest.raises(ValueError, match="naive"):
            await broker.publish_many(
                "q",
                [
                    OutgoingMessage(body=b"ok"),
                    OutgoingMessage(body=b"ok", not_before=datetime(2030, 1, 1)),
                ],
            )
        assert await broker.counts("q") == QueueCounts()


async def test_body_over_max_body_bytes_is_rejected(clock: ManualClock) -> None:
    async with MemoryBroker(clock=clock, max_body_bytes=4) as broker:
        assert broker.capabilities.max_body_bytes == 4
        await broker.publish("q", b"1234")
        with pytest.raises(MessageTooLargeError, match="max_body_bytes=4"):
            await broker.publish("q", b"12345")
        assert await broker.counts("q") == QueueCounts(ready=1)


async def test_a_backlog_is_left_alone_by_the_garbage_collector(broker: MemoryBroker) -> None:
    """Queued messages, ready, delayed or given back, hold nothing the collector must follow:
    once it has looked at them it stops tracking them (a collection per level of nested
    tuples), so a backlog costs later collections nothing."""
    messages = [OutgoingMessage(body=b"%d" % i, headers={"k": "v"}) for i in range(50)]
    await broker.publish_many("q", messages)
    later = datetime.now(UTC) + timedelta(hours=1)
    await broker.publish("q", b"later", {"k": "v"}, not_before=later)
    async with broker.consume(["q"], prefetch=5) as consumer:
        first, *_ = await consumer.fetch(5, timeout=0)
        await first.nack(requeue=True)
    for _ in range(4):  # a delayed entry with headers nests four tuples deep
        gc.collect()
    queue = broker._store.queues["q"]
    assert len(queue.ready) == 50
    assert len(queue.delayed) == 1
    assert not any(gc.is_tracked(message) for message in queue.ready)
    assert not any(gc.is_tracked(entry) for entry in queue.delayed)
