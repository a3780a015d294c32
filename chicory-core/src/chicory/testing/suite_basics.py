"""Broker basics: publishing, consuming, bodies, headers, queues, counts and closing."""

from __future__ import annotations

import asyncio
import contextlib

import anyio

from chicory.broker import OutgoingMessage, QueueCounts
from chicory.errors import MessageTooLargeError
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    bodies,
    expect_counts,
    fetch_exactly,
    fetch_none,
    publish_unique,
)
from chicory.testing.suite_cleanup import CleanupGuarantees

__all__ = ["BrokerBasicsSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
ROUND_TRIP = ("broker.round_trip",)


class BrokerBasicsSuite(CleanupGuarantees):
    """Subclass with an empty body (``class TestBasics(BrokerBasicsSuite): pass``)."""

    @guarantee("broker.round_trip", MUST, env=BROKER_ENV)
    async def test_round_trip(self, env: BrokerEnv) -> None:
        """MUST deliver a published message once, with its body, queue and message id."""
        broker = await env.broker()
        queue = env.queue()
        message_id = await broker.publish(queue, b"hello", {"k": "v"})
        async with broker.consume([queue], prefetch=10) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1, what="of the published message")
            assert delivery.body == b"hello", f"published b'hello'; delivered {delivery.body!r}"
            assert delivery.queue == queue, (
                f"consumed from {queue!r}; the delivery names queue {delivery.queue!r}"
            )
            assert delivery.message_id == message_id, (
                f"publish() returned id {message_id!r}; the delivery has {delivery.message_id!r}"
            )
            assert delivery.delivery_count == 1, (
                f"a first delivery must count 1; it counts {delivery.delivery_count}"
            )
            await delivery.ack()
            await fetch_none(consumer, what="after the only message was acked")

    @guarantee("broker.binary_bodies", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_binary_bodies(self, env: BrokerEnv) -> None:
        """MUST return every body byte for byte: NULs, invalid UTF-8, empty, all 256 values."""
        broker = await env.broker()
        queue = env.queue()
        sent = [bytes(range(256)), b"\x00\x00", b"\xff\xfe\xc3(", b"", "é✓".encode()]
        for body in sent:
            await broker.publish(queue, body, {})
        async with broker.consume([queue], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, len(sent))
            altered = [body for body in sent if body not in bodies(got)]
            assert not altered, (
                f"these bodies did not come back byte for byte: {altered}; the broker "
                f"delivered {bodies(got)}"
            )
            await consumer.ack_many(got)

    @guarantee("broker.large_body", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_large_body(self, env: BrokerEnv) -> None:
        """MUST accept and return a body as large as the declared limit (or 1 MiB)."""
        broker = await env.broker()
        queue = env.queue()
        limit = env.capabilities.max_body_bytes
        size = limit if limit is not None else env.harness.large_body_bytes
        body = (bytes(range(251)) * (size // 251 + 1))[:size]  # byte i is i % 251
        await broker.publish(queue, body, {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1, what=f"of a {size}-byte body")
            assert len(delivery.body) == size, (
                f"published {size} bytes; the broker delivered {len(delivery.body)}"
            )
            assert delivery.body == body, f"a {size}-byte body came back with other bytes"
            await delivery.ack()

    @guarantee(
        "broker.body_limit", MUST, env=BROKER_ENV, requires=("max_body_bytes",), rests_on=ROUND_TRIP
    )
    async def test_body_limit(self, env: BrokerEnv) -> None:
        """MUST refuse a body over the declared limit (MessageTooLargeError), enqueuing nothing."""
        broker = await env.broker()
        queue = env.queue()
        limit = env.capabilities.max_body_bytes
        assert limit is not None
        try:
            await broker.publish(queue, b"x" * (limit + 1), {})
        except MessageTooLargeError:
            pass
        else:
            raise AssertionError(
                f"expected MessageTooLargeError for a {limit + 1}-byte body over the declared "
                f"max_body_bytes={limit}; the broker accepted it"
            )
        await expect_counts(broker, queue, what="after refusing a body", ready=0)

    @guarantee("broker.headers_preserved", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_headers_preserved(self, env: BrokerEnv) -> None:
        """MUST return headers exactly as published (keys, values, unicode, empty values)."""
        broker = await env.broker()
        queue = env.queue()
        headers = {"a": "1", "empty": "", "unicode": "héllo ✓", "x-long": "v" * 500}
        headers.update({f"h{i}": str(i) for i in range(20)})
        await broker.publish(queue, b"body", headers)
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            got = dict(delivery.headers)
            differ = {k for k in headers.keys() | got.keys() if headers.get(k) != got.get(k)}
            assert not differ, "headers came back altered: " + "; ".join(
                f"{k!r}: published {headers.get(k)!r}, delivered {got.get(k)!r}"
                for k in sorted(differ)
            )
            await delivery.ack()

    @guarantee("broker.queue_isolation", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_queue_isolation(self, env: BrokerEnv) -> None:
        """MUST keep queues apart: a consumer of one queue never sees another's messages."""
        broker = await env.broker()
        a, b = env.queue("a"), env.queue("b")
        await publish_unique(broker, a, 3, prefix="a")
        async with broker.consume([b], prefetch=10) as consumer:
            await fetch_none(consumer, what=f"on {b!r}: only {a!r} has messages")
        counts = await broker.counts(b)
        assert counts == QueueCounts(), (
            f"expected empty counts for {b!r}; the broker counts {counts}"
        )
        await broker.publish(b, b"b-0", {})
        async with broker.consume([a], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, 3)
            assert sorted(bodies(got)) == [b"a-0", b"a-1", b"a-2"], (
                f"expected a-0, a-1, a-2 from {a!r}; the broker delivered {bodies(got)}"
            )
            assert all(d.queue == a for d in got), (
                f"deliveries of {a!r} name queues {[d.queue for d in got]}"
            )
            await fetch_none(consumer, what=f"from {b!r} on a consumer of {a!r}")
            await consumer.ack_many(got)
        await expect_counts(broker, b, what=f"{b!r} after {a!r} was consumed", ready=1)

    @guarantee("broker.multi_queue_consume", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_multi_queue_consume(self, env: BrokerEnv) -> None:
        """MUST deliver from every queue of a multi-queue consumer, naming each one's queue."""
        broker = await env.broker()
        a, b = env.queue("a"), env.queue("b")
        await broker.publish(a, b"from-a", {})
        await broker.publish(b, b"from-b", {})
        async with broker.consume([a, b], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, 2, what="from a consumer of two queues")
            seen = {(d.queue, d.body) for d in got}
            assert seen == {(a, b"from-a"), (b, b"from-b")}, (
                f"expected from-a from {a!r} and from-b from {b!r}; the broker delivered {seen}"
            )
            await consumer.ack_many(got)

    @guarantee(
        "broker.fifo",
        MUST,
        env=BROKER_ENV,
        requires=("fifo",),
        rests_on=(*ROUND_TRIP, "settle.ack_many"),
    )
    async def test_fifo(self, env: BrokerEnv) -> None:
        """MUST hand one consumer the ready messages of a queue in publish order (if fifo)."""
        broker = await env.broker()
        queue = env.queue()
        sent = await publish_unique(broker, queue, 20)
        received: list[bytes] = []
        async with broker.consume([queue], prefetch=5) as consumer:
            while len(received) < len(sent):
                got = await fetch_exactly(consumer, 1)
                received.extend(bodies(got))
                await consumer.ack_many(got)
        assert received == sent, f"published {sent}; the broker delivered them as {received}"

    @guarantee("broker.publish_many", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_publish_many(self, env: BrokerEnv) -> None:
        """MUST enqueue every message of publish_many and return their ids in order."""
        broker = await env.broker()
        queue = env.queue()
        messages = [OutgoingMessage(body=f"m{i}".encode(), headers={"i": str(i)}) for i in range(7)]
        ids = await broker.publish_many(queue, messages)
        assert len(ids) == len(set(ids)) == len(messages), (
            f"expected {len(messages)} distinct ids from publish_many; it returned {ids}"
        )
        async with broker.consume([queue], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, len(messages))
            by_body = {d.body: d for d in got}
            for message_id, message in zip(ids, messages, strict=True):
                delivery = by_body[message.body]
                assert delivery.message_id == message_id, (
                    f"publish_many returned id {message_id!r} for {message.body!r}; its "
                    f"delivery has id {delivery.message_id!r} (ids must be in message order)"
                )
                assert dict(delivery.headers) == dict(message.headers), (
                    f"{message.body!r} was published with headers {dict(message.headers)}; "
                    f"delivered with {dict(delivery.headers)}"
                )
            await consumer.ack_many(got)

    @guarantee("broker.counts", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_counts(self, env: BrokerEnv) -> None:
        """MUST report ready and in-flight counts that match what was published and settled."""
        broker = await env.broker()
        queue = env.queue()
        counts = await broker.counts(queue)
        assert counts == QueueCounts(), f"a new queue must count nothing; it counts {counts}"
        await publish_unique(broker, queue, 3)
        await expect_counts(
            broker, queue, what="after 3 publishes", ready=3, in_flight=0, delayed=0, dead=0
        )
        async with broker.consume([queue], prefetch=10) as consumer:
            first = await fetch_exactly(consumer, 2)
            await expect_counts(broker, queue, what="with 2 of 3 fetched", ready=1, in_flight=2)
            await first[0].ack()
            await expect_counts(
                broker, queue, what="after one of them was acked", ready=1, in_flight=1
            )
        await expect_counts(
            broker, queue, what="after the consumer closed (it hands back)", ready=2, in_flight=0
        )

    @guarantee("broker.close_idempotent", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_close_idempotent(self, env: BrokerEnv) -> None:
        """MUST accept close() twice, on consumers and brokers, and reopen after close."""
        broker = await env.broker()
        queue = env.queue()
        consumer = broker.consume([queue], prefetch=1)
        async with consumer:
            await fetch_none(consumer, wait=0.05)
        await consumer.close()
        await consumer.close()
        await broker.close()
        await broker.close()
        again = await env.broker()
        await again.publish(queue, b"after-close", {})
        async with again.consume([queue], prefetch=1) as consumer2:
            (delivery,) = await fetch_exactly(consumer2, 1, what="from a broker opened after close")
            await delivery.ack()

    @guarantee(
        "broker.new_event_loop", MUST, env=BROKER_ENV, rests_on=(*ROUND_TRIP, "settle.ack_many")
    )
    async def test_new_event_loop(self, env: BrokerEnv) -> None:
        """MUST work on a new event loop after close(), once the loop it connected on ended."""
        broker = env.unconnected_broker()
        queue = env.queue()

        async def on_the_first_loop() -> None:
            await broker.connect()
            await broker.publish(queue, b"first loop", {})

        # An application's first asyncio.run() ends without closing the broker.
        await anyio.to_thread.run_sync(asyncio.run, on_the_first_loop())
        with contextlib.suppress(Exception):  # that loop is gone: close may fail, must forget
            await broker.close()
        await broker.connect()
        await broker.publish(queue, b"this loop", {})
        async with broker.consume([queue], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, 2, what="published on both loops")
            assert sorted(bodies(got)) == [b"first loop", b"this loop"]
            await consumer.ack_many(got)

    @guarantee(
        "broker.close_cancellation_safe",
        MUST,
        env=BROKER_ENV,
        rests_on=(*ROUND_TRIP, "delivery.redeliver_on_close"),
    )
    async def test_close_cancellation_safe(self, env: BrokerEnv) -> None:
        """MUST survive a cancelled fetch and a cancelled close: nothing lost, close completes."""
        broker = await env.broker(lease_seconds=env.harness.short_lease)
        queue = env.queue()
        consumer = broker.consume([queue], prefetch=5)
        await consumer.__aenter__()
        with anyio.move_on_after(0.2):
            await consumer.fetch(5, timeout=10.0)  # blocks until cancelled
        await broker.publish(queue, b"after-cancel", {})
        with anyio.CancelScope() as scope:
            scope.cancel()
            await consumer.close()
        await consumer.close()
        async with broker.consume([queue], prefetch=5) as other:
            got = await fetch_exactly(
                other,
                1,
                within=env.harness.patience,
                what="of a message published after a cancelled fetch and a cancelled close",
            )
            assert bodies(got) == [b"after-cancel"], (
                f"expected b'after-cancel'; the broker delivered {bodies(got)}"
            )
            await other.ack_many(got)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await broker.close()
        await broker.close()
