"""The Redis broker's behaviour on a real server: publishing, settling, delays, dead letters."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis

from chicory.broker import Broker, Consumer, Delivery, OutgoingMessage, QueueCounts
from chicory.clock import ManualClock
from chicory.errors import BrokerError, DeliveryStateError, MessageTooLargeError
from chicory_redis.broker import PUBLISH_CHUNK, RedisBroker
from chicory_redis.entries import encode_headers, pack_message

BrokerFactory = Callable[..., Awaitable[RedisBroker]]


def test_implements_the_core_protocols() -> None:
    broker = RedisBroker.from_url("redis://localhost")
    assert isinstance(broker, Broker)
    caps = broker.capabilities
    assert all((caps.delayed_delivery, caps.lease_renewal, caps.dead_letter, caps.fifo))
    assert all((caps.atomic_retry, caps.shared))
    assert caps.priorities
    assert caps.max_body_bytes == 64 * 1024 * 1024
    assert caps.lease_seconds == 30.0
    assert RedisBroker.from_url("redis://h?lease_seconds=7").capabilities.lease_seconds == 7.0


async def test_round_trip_keeps_body_headers_and_id(broker: RedisBroker) -> None:
    body = bytes(range(256)) + b"\n\x00end"
    message_id = await broker.publish("q", body, {"k": "v", "multi\nline": "ok"})
    async with broker.consume(["q"], prefetch=5) as consumer:
        assert isinstance(consumer, Consumer)
        [delivery] = await consumer.fetch(5, timeout=1)
        assert isinstance(delivery, Delivery)
        assert delivery.body == body
        assert dict(delivery.headers) == {"k": "v", "multi\nline": "ok"}
        assert delivery.message_id == message_id
        assert delivery.queue == "q"
        assert delivery.delivery_count == 1
        await delivery.ack()


async def test_publish_many_keeps_order_and_is_fifo(broker: RedisBroker) -> None:
    ids = await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(20)])
    assert len(set(ids)) == 20
    async with broker.consume(["q"], prefetch=50) as consumer:
        got = await consumer.fetch(50, timeout=1)
        assert [d.body for d in got] == [b"%d" % i for i in range(20)]
        assert [d.message_id for d in got] == ids
        await consumer.ack_many(got)


async def test_publish_many_keeps_any_body_bytes(broker: RedisBroker) -> None:
    bodies = [b"", b"\n\n", bytes(range(256)), b"x" * 70_000, b"plain"]
    await broker.publish_many("q", [OutgoingMessage(body=b, headers={"k\n": "v"}) for b in bodies])
    async with broker.consume(["q"], prefetch=10) as consumer:
        got = await consumer.fetch(10, timeout=1)
        assert [d.body for d in got] == bodies
        assert {tuple(d.headers.items()) for d in got} == {(("k\n", "v"),)}
        await consumer.ack_many(got)


async def test_ack_deletes_the_entry_so_the_stream_stays_small(
    broker: RedisBroker, raw_redis: aioredis.Redis
) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x") for _ in range(5)])
    stream = broker.keys.queue("q").stream
    async with broker.consume(["q"], prefetch=5) as consumer:
        got = await consumer.fetch(5, timeout=1)
        assert await raw_redis.xlen(stream) == 5
        await got[0].ack()
        await consumer.ack_many(got[1:])
        assert await raw_redis.xlen(stream) == 0
        await got[0].ack()  # a second settle does nothing
    assert await broker.counts("q") == QueueCounts()


async def test_fetch_never_exceeds_prefetch_or_max_count(broker: RedisBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"x") for _ in range(6)])
    async with broker.consume(["q"], prefetch=3) as consumer:
        assert len(await consumer.fetch(2, timeout=1)) == 2
        assert len(await consumer.fetch(10, timeout=1)) == 1
        assert await consumer.fetch(10, timeout=0.2) == []
        counts = await broker.counts("q")
        assert (counts.ready, counts.in_flight) == (3, 3)


async def test_fetch_serves_several_queues(broker: RedisBroker) -> None:
    await broker.publish("a", b"from a")
    await broker.publish("b", b"from b")
    async with broker.consume(["a", "b"], prefetch=10) as consumer:
        got = await consumer.fetch(10, timeout=1)
        assert sorted((d.queue, d.body) for d in got) == [("a", b"from a"), ("b", b"from b")]
        await consumer.ack_many(got)
        # Both queues empty: a blocking fetch wakes for a message on either one.
        await broker.publish("b", b"late")
        [late] = await consumer.fetch(1, timeout=2)
        assert (late.queue, late.body) == ("b", b"late")


async def test_nack_requeues_at_the_back_with_count_carried(broker: RedisBroker) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"first"), OutgoingMessage(body=b"2")])
    async with broker.consume(["q"], prefetch=1) as consumer:
        [first] = await consumer.fetch(1, timeout=1)
        await first.nack(requeue=True)
        [second] = await consumer.fetch(1, timeout=1)
        assert second.body == b"2"
        await second.ack()
        [again] = await consumer.fetch(1, timeout=1)
        assert (again.body, again.message_id) == (b"first", first.message_id)
        assert again.delivery_count == 2
        await again.nack(requeue=False)
    assert await broker.counts("q") == QueueCounts()


async def test_nack_with_delay_and_delayed_publish_are_not_delivered_early(
    make_broker: BrokerFactory,
) -> None:
    clock = ManualClock(start=datetime.now(UTC).timestamp())
    broker = await make_broker(delayed_poll_interval=0.01)
    broker = RedisBroker(broker.settings, clock=clock)
    await broker.connect()
    try:
        start = datetime.fromtimestamp(clock.time(), UTC)
        await broker.publish("q", b"later", not_before=start + timedelta(seconds=60))
        await broker.publish("q", b"now")
        async with broker.consume(["q"], prefetch=5) as consumer:
            [now] = await consumer.fetch(5, timeout=0.3)
            assert now.body == b"now"
            await now.nack(delay=30)
            assert await broker.counts("q") == QueueCounts(delayed=2)
            clock.advance(29.9)
            assert await consumer.fetch(5, timeout=0.2) == []
            clock.advance(0.2)
            [again] = await consumer.fetch(5, timeout=1)
            assert (again.body, again.delivery_count) == (b"now", 2)
            clock.advance(29.8)
            assert await consumer.fetch(5, timeout=0.2) == []
            clock.advance(0.2)
            [later] = await consumer.fetch(5, timeout=1)
            assert later.body == b"later"
            await consumer.ack_many([again, later])
    finally:
        await broker.close()


async def test_publish_rejects_naive_times_and_large_bodies(make_broker: BrokerFactory) -> None:
    broker = await make_broker(max_body_bytes=10)
    with pytest.raises(MessageTooLargeError):
        await broker.publish("q", b"x" * 11)
    with pytest.raises(ValueError, match="naive"):
        await broker.publish("q", b"x", not_before=datetime.now())
    assert await broker.counts("q") == QueueCounts()
    await broker.publish("q", b"small")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=1)
        with pytest.raises(MessageTooLargeError):
            await delivery.retry(b"x" * 11, {}, not_before=None)
        assert await broker.counts("q") == QueueCounts(in_flight=1)
        await delivery.ack()


async def test_retry_replaces_the_message_atomically(broker: RedisBroker) -> None:
    await broker.publish("q", b"attempt 1", {"a": "1"})
    async with broker.consume(["q"], prefetch=5) as consumer:
        [delivery] = await consumer.fetch(5, timeout=1)
        await delivery.retry(b"attempt 2", {"a": "2"}, not_before=None)
        assert await broker.counts("q") == QueueCounts(ready=1)
        [replacement] = await consumer.fetch(5, timeout=1)
        assert (replacement.body, dict(replacement.headers)) == (b"attempt 2", {"a": "2"})
        assert replacement.message_id != delivery.message_id
        assert replacement.delivery_count == 1
        later = datetime.now(UTC) + timedelta(hours=1)
        await replacement.retry(b"attempt 3", {}, not_before=later)
        await replacement.retry(b"ignored", {}, not_before=None)  # second settle: nothing
        assert await broker.counts("q") == QueueCounts(delayed=1)


async def test_dead_letter_list_replay_delete_purge(broker: RedisBroker) -> None:
    await broker.publish_many(
        "q", [OutgoingMessage(body=b"%d" % i, headers={"task": str(i)}) for i in range(3)]
    )
    async with broker.consume(["q"], prefetch=5) as consumer:
        got = await consumer.fetch(5, timeout=1)
        for delivery in got:
            await delivery.dead_letter(f"bad {delivery.body.decode()}")
        assert await broker.counts("q") == QueueCounts(dead=3)
        dead = await broker.dead_letters("q")
        assert [d.body for d in dead] == [b"0", b"1", b"2"]
        assert [d.reason for d in dead] == ["bad 0", "bad 1", "bad 2"]
        assert dead[0].headers == {"task": "0"}
        assert (dead[0].delivery_count, dead[0].queue) == (1, "q")
        assert dead[0].dead_at.tzinfo is not None
        assert len(await broker.dead_letters("q", limit=2)) == 2

        assert await broker.replay_dead_letter("q", dead[0].id)
        assert not await broker.replay_dead_letter("q", dead[0].id)
        assert not await broker.replay_dead_letter("q", "not-an-id")
        [replayed] = await consumer.fetch(5, timeout=1)
        assert (replayed.body, replayed.delivery_count) == (b"0", 1)
        assert replayed.message_id != got[0].message_id  # a replay is a new message
        assert dict(replayed.headers) == {"task": "0"}
        await replayed.ack()

        assert await broker.delete_dead_letter("q", dead[1].id)
        assert not await broker.delete_dead_letter("q", dead[1].id)
        assert await broker.purge_dead_letters("q") == 1
        assert await broker.counts("q") == QueueCounts()


async def test_dead_letter_after_ack_records_a_copy(broker: RedisBroker) -> None:
    await broker.publish("q", b"pre-acked")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=1)
        await delivery.ack()
        await delivery.dead_letter("failed after the pre-ack")
        await delivery.dead_letter("a second time: nothing")
    [dead] = await broker.dead_letters("q")
    assert (dead.body, dead.reason) == (b"pre-acked", "failed after the pre-ack")
    assert await broker.counts("q") == QueueCounts(dead=1)


async def test_close_hands_back_at_once_and_later_settles_raise(
    broker: RedisBroker, make_broker: BrokerFactory
) -> None:
    await broker.publish_many("q", [OutgoingMessage(body=b"%d" % i) for i in range(3)])
    consumer = broker.consume(["q"], prefetch=3)
    first, second, third = await consumer.fetch(3, timeout=1)
    await first.ack()
    await consumer.close()
    await consumer.close()  # idempotent
    await first.ack()  # settled before the close: fine
    with pytest.raises(DeliveryStateError):
        await second.ack()
    with pytest.raises(DeliveryStateError):
        await third.nack()
    with pytest.raises(BrokerError):
        await consumer.fetch(1, timeout=0)
    # Ready again now, not after the 30 s lease, on another broker.
    other = await make_broker()
    async with other.consume(["q"], prefetch=5) as consumer2:
        got = await consumer2.fetch(5, timeout=1)
        assert [d.body for d in got] == [b"1", b"2"]
        assert [d.delivery_count for d in got] == [2, 2]
        await consumer2.ack_many(got)


async def test_entries_read_by_a_cancelled_fetch_are_handed_back_on_close(
    make_broker: BrokerFactory, redis_url: str
) -> None:
    """A fetch cancelled after Redis answered (a worker stopping mid-read) leaves what it
    read pending for the consumer; close() hands that back at once too, uncounted."""
    # One long XREADGROUP BLOCK, nothing else in between.
    broker = await make_broker(reclaim_interval=60, delayed_poll_interval=60, block_ms=10_000)
    consumer = broker.consume(["q"], prefetch=5)
    await broker.publish("q", b"held")
    [held] = await consumer.fetch(5, timeout=1)
    fetch = asyncio.ensure_future(consumer.fetch(5, timeout=10))
    await asyncio.sleep(0.2)  # the fetch is blocked in XREADGROUP on the empty stream
    # Publish without letting the event loop run: Redis answers the blocked read at once,
    # and the fetch is cancelled before it can read that answer.
    sync_client = redis.Redis.from_url(redis_url)
    try:
        fields = {"id": "late", "n": "0", "headers": "{}", "body": b"unseen"}
        sync_client.xadd(broker.keys.queue("q").stream, fields)
        time.sleep(0.2)  # noqa: ASYNC251 -- the point: the event loop must not run
    finally:
        sync_client.close()
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch
    assert await broker.counts("q") == QueueCounts(in_flight=2)  # "unseen" is pending
    await consumer.close()
    assert await broker.counts("q") == QueueCounts(ready=2)
    other = await make_broker()
    async with other.consume(["q"], prefetch=5) as consumer2:
        got = await consumer2.fetch(5, timeout=1)
        assert {d.body: d.delivery_count for d in got} == {b"held": 2, b"unseen": 1}
        await consumer2.ack_many(got)
    assert held.state.value == "handed back"


async def test_closing_after_a_cancelled_fetch_of_a_deleted_queue_is_quiet(
    make_broker: BrokerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing can be pending in a queue that was deleted: close() has nothing to give back
    and nothing to warn about."""
    broker = await make_broker(reclaim_interval=60, delayed_poll_interval=60, block_ms=10_000)
    consumer = broker.consume(["q"], prefetch=5)
    fetch = asyncio.ensure_future(consumer.fetch(5, timeout=10))
    await asyncio.sleep(0.2)  # blocked in XREADGROUP
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch
    await broker.delete_queue("q")
    with caplog.at_level(logging.WARNING, logger="chicory.redis"):
        await consumer.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_broker_close_closes_its_consumers(make_broker: BrokerFactory) -> None:
    broker = await make_broker()
    await broker.publish("q", b"x")
    consumer = broker.consume(["q"], prefetch=1)
    [delivery] = await consumer.fetch(1, timeout=1)
    await broker.close()
    with pytest.raises(DeliveryStateError):
        await delivery.ack()
    other = await make_broker()
    assert await other.counts("q") == QueueCounts(ready=1)


async def test_settling_a_delivery_of_another_consumer_is_refused(broker: RedisBroker) -> None:
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=1) as one, broker.consume(["q"], prefetch=1) as two:
        [delivery] = await one.fetch(1, timeout=1)
        with pytest.raises(DeliveryStateError):
            await two.ack_many([delivery])
        await one.ack_many([delivery])


async def test_max_deliveries_dead_letters_instead_of_requeueing(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker(max_deliveries=2)
    await broker.publish("q", b"poison")
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=1)
        await delivery.nack()
        [delivery] = await consumer.fetch(1, timeout=1)
        assert delivery.delivery_count == 2
        await delivery.nack()
        assert await consumer.fetch(1, timeout=0.1) == []
    [dead] = await broker.dead_letters("q")
    assert "max_deliveries=2" in dead.reason
    assert dead.delivery_count == 2


async def test_counts_of_an_unknown_queue_are_zero(broker: RedisBroker) -> None:
    assert await broker.counts("never-used") == QueueCounts()
    assert await broker.dead_letters("never-used") == []
    assert await broker.purge_dead_letters("never-used") == 0


async def test_fetch_survives_its_connections_being_killed(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis, prefix: str
) -> None:
    name = f"{prefix}-killed"
    broker = await make_broker(client_name=name, reconnect_backoff=0.05)
    async with broker.consume(["q"], prefetch=1) as consumer:
        assert await consumer.fetch(1, timeout=0) == []
        fetching = asyncio.create_task(consumer.fetch(1, timeout=10))
        await asyncio.sleep(0.2)
        for client in await raw_redis.client_list():
            if client.get("name") == name:
                await raw_redis.client_kill_filter(_id=client["id"])
        await broker.publish("q", b"after the drop")
        [delivery] = await fetching
        assert delivery.body == b"after the drop"
        await delivery.ack()
    assert await broker.counts("q") == QueueCounts()


async def test_a_fetch_waiting_when_the_broker_closes_returns_nothing(
    make_broker: BrokerFactory,
) -> None:
    broker = await make_broker()
    consumer = broker.consume(["q"], prefetch=1)
    fetching = asyncio.create_task(consumer.fetch(1, timeout=10))
    await asyncio.sleep(0.1)
    await broker.close()
    assert await fetching == []


async def test_publish_many_in_several_script_calls_keeps_order_and_layout(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis
) -> None:
    """More than one script call's worth, ready and delayed mixed: same layout as publish."""
    clock = ManualClock(start=datetime.now(UTC).timestamp())
    plain = await make_broker(delayed_poll_interval=0.01)
    broker = RedisBroker(plain.settings, clock=clock)
    await broker.connect()
    try:
        later = datetime.fromtimestamp(clock.time(), UTC) + timedelta(seconds=60)
        count = PUBLISH_CHUNK * 2 + 7
        messages = [
            OutgoingMessage(
                body=b"%d\n" % i,
                headers={"i": str(i)} if i % 3 else {},
                not_before=later if i % 100 == 0 else None,
            )
            for i in range(count)
        ]
        ids = await broker.publish_many("q", messages)
        delayed_ids = [ids[i] for i in range(0, count, 100)]
        assert await broker.counts("q") == QueueCounts(
            ready=count - len(delayed_ids), delayed=len(delayed_ids)
        )
        members = await raw_redis.zrange(broker.keys.queue("q").delayed, 0, -1)
        expected = [
            pack_message(ids[i], 0, encode_headers(messages[i].headers), messages[i].body)
            for i in range(0, count, 100)
        ]
        assert sorted(members) == sorted(expected)
        entries = await raw_redis.xrange(broker.keys.queue("q").stream, "-", "+", count=5)
        assert [fields for _, fields in entries] == [
            {b"m": pack_message(ids[i], 0, encode_headers(messages[i].headers), messages[i].body)}
            for i in range(1, 6)
        ]
        async with broker.consume(["q"], prefetch=count) as consumer:
            got: list[Delivery] = []
            while len(got) < count - len(delayed_ids):
                got.extend(await consumer.fetch(count, timeout=1))
            ready = [i for i in range(count) if i % 100]
            assert [d.message_id for d in got] == [ids[i] for i in ready]
            assert [d.body for d in got] == [b"%d\n" % i for i in ready]
            assert [dict(d.headers) for d in got] == [{"i": str(i)} if i % 3 else {} for i in ready]
            assert {d.delivery_count for d in got} == {1}
            await consumer.ack_many(got)
            clock.advance(61)
            due = await consumer.fetch(count, timeout=1)
            assert sorted(d.message_id for d in due) == sorted(delayed_ids)  # same due time
            await consumer.ack_many(due)
    finally:
        await broker.close()


async def test_entries_written_by_something_else_are_delivered_readably(
    broker: RedisBroker, raw_redis: aioredis.Redis
) -> None:
    """Entries in another field order, with extra or missing fields, still decode."""
    stream = broker.keys.queue("q").stream
    await broker.publish("q", b"warm-up")  # creates the stream and its group
    async with broker.consume(["q"], prefetch=10) as consumer:
        [first] = await consumer.fetch(10, timeout=1)
        await first.ack()
        odd = await raw_redis.xadd(stream, {"body": b"b1", "n": "2", "id": "m1", "x": "y"})
        bare = await raw_redis.xadd(stream, {"something": "else"})
        got = await consumer.fetch(10, timeout=1)
        assert [(d.message_id, d.body, d.delivery_count) for d in got] == [
            ("m1", b"b1", 3),
            (bare.decode(), b"", 1),
        ]
        assert odd.decode() != "m1"
        await consumer.ack_many(got)


async def test_one_message_is_one_field_holding_it_packed(
    broker: RedisBroker, raw_redis: aioredis.Redis
) -> None:
    """``publish``, a requeue and a replay all write the entry layout the docs give."""
    stream = broker.keys.queue("q").stream
    message_id = await broker.publish("q", b"line one\nline two", {"k": "v"})
    packed = pack_message(message_id, 0, encode_headers({"k": "v"}), b"line one\nline two")
    [(_, fields)] = await raw_redis.xrange(stream)
    assert fields == {b"m": packed}
    async with broker.consume(["q"], prefetch=1) as consumer:
        [delivery] = await consumer.fetch(1, timeout=1)
        await delivery.nack(requeue=True)
        [(_, fields)] = await raw_redis.xrange(stream)
        assert fields == {
            b"m": pack_message(message_id, 1, encode_headers({"k": "v"}), b"line one\nline two")
        }
        [again] = await consumer.fetch(1, timeout=1)
        assert (again.message_id, again.body, again.delivery_count) == (
            message_id,
            b"line one\nline two",
            2,
        )
        await again.dead_letter("for the test")
    [dead] = await broker.dead_letters("q")
    assert await broker.replay_dead_letter("q", dead.id)
    [(_, fields)] = await raw_redis.xrange(stream)
    replayed_id = fields[b"m"].split(b"\n", 1)[0].decode()
    assert replayed_id != message_id  # a replay is a new message
    assert fields == {
        b"m": pack_message(replayed_id, 0, encode_headers({"k": "v"}), b"line one\nline two")
    }


async def test_entries_in_the_earlier_layout_and_broken_packed_ones_still_decode(
    broker: RedisBroker, raw_redis: aioredis.Redis
) -> None:
    """Four-field entries left by an earlier version are delivered (and requeued) whole; a
    packed value without its four parts arrives as the body, for the worker to dead-letter."""
    stream = broker.keys.queue("q").stream
    await broker.publish("q", b"warm-up")  # creates the stream and its group
    async with broker.consume(["q"], prefetch=10) as consumer:
        [first] = await consumer.fetch(10, timeout=1)
        await first.ack()
        fields = {"id": "m1", "n": "2", "headers": '{"k":"v"}', "body": b"old\nbody"}
        await raw_redis.xadd(stream, fields)
        broken = await raw_redis.xadd(stream, {"m": b"no parts"})
        old, bad = await consumer.fetch(10, timeout=1)
        assert (old.message_id, dict(old.headers), old.body, old.delivery_count) == (
            "m1",
            {"k": "v"},
            b"old\nbody",
            3,
        )
        assert (bad.message_id, dict(bad.headers), bad.body) == (broken.decode(), {}, b"no parts")
        await bad.ack()
        await old.nack(requeue=True)
        [again] = await consumer.fetch(10, timeout=1)
        assert (again.message_id, dict(again.headers), again.body, again.delivery_count) == (
            "m1",
            {"k": "v"},
            b"old\nbody",
            4,
        )
        await again.ack()


async def test_dead_letters_over_the_limit_are_dropped_by_every_path(
    make_broker: BrokerFactory, raw_redis: aioredis.Redis, prefix: str
) -> None:
    """A dead letter recorded by dead_letter(), by an after-ack copy or by max_deliveries
    (the requeue script) trims the queue's dead-letter stream to the newest ones; the
    queue's own stream is never trimmed."""
    broker = await make_broker(max_deliveries=1, dead_letter_max_count=2)
    await broker.publish_many("q", [OutgoingMessage(body=b"%d" % n) for n in range(6)])
    async with broker.consume(["q"], prefetch=6) as consumer:
        d0, d1, d2, d3, d4, d5 = await consumer.fetch(6, timeout=1)
        await d0.dead_letter("by hand")
        await d1.ack()
        await d1.dead_letter("a copy after the ack")
        for d in (d2, d3, d4):
            await d.nack(requeue=True)  # delivered max_deliveries times: dead-lettered
        assert await raw_redis.xlen(f"{prefix}:{{q:q}}:dead") == 2  # before any listing
        assert [d.body for d in await broker.dead_letters("q")] == [b"3", b"4"]
        assert (await broker.counts("q")).in_flight == 1  # d5, untouched
        await d5.ack()
