"""Settling deliveries: ack, nack, retry, and what settling twice or too late does."""

from __future__ import annotations

from chicory.errors import DeliveryStateError
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    bodies,
    expect_counts,
    fetch_exactly,
    fetch_none,
    fetch_none_before,
    in_seconds,
    publish_unique,
)

__all__ = ["BrokerSettlementSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
ROUND_TRIP = ("broker.round_trip",)


class BrokerSettlementSuite:
    """Subclass with an empty body (``class TestSettlement(BrokerSettlementSuite): pass``)."""

    @guarantee("settle.ack_removes", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_ack_removes(self, env: BrokerEnv) -> None:
        """MUST remove an acked message for good: not counted, not redelivered after close."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"acked", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.ack()
            await expect_counts(
                broker, queue, what="after the only message was acked", ready=0, in_flight=0
            )
        async with broker.consume([queue], prefetch=1) as consumer:
            await fetch_none(consumer, what="of an acked message, after its consumer closed")

    @guarantee("settle.ack_many", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_ack_many(self, env: BrokerEnv) -> None:
        """MUST remove every message acked together with Consumer.ack_many."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 5)
        async with broker.consume([queue], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, 5)
            lost = await consumer.ack_many(got)
            assert not lost, (
                f"ack_many of 5 fresh deliveries reported {len(lost or ())} as lost leases"
            )
        async with broker.consume([queue], prefetch=10) as consumer:
            await fetch_none(consumer, what="of messages acked with ack_many")
        await expect_counts(broker, queue, what="after ack_many", ready=0, in_flight=0)

    @guarantee("settle.nack_requeue", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_nack_requeue(self, env: BrokerEnv) -> None:
        """MUST make a nack(requeue=True)'d message ready again at once, same id, count + 1."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"again", {"h": "1"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            await first.nack(requeue=True)
            (second,) = await fetch_exactly(consumer, 1, what="of a requeued message")
            assert (second.body, dict(second.headers)) == (b"again", {"h": "1"}), (
                f"the requeued message came back as {second.body!r} {dict(second.headers)}"
            )
            assert second.message_id == first.message_id, (
                f"a requeued message keeps its id {first.message_id!r}; it came back as "
                f"{second.message_id!r}"
            )
            assert second.delivery_count == first.delivery_count + 1, (
                f"a requeued message's next delivery counts {first.delivery_count + 1}; it "
                f"counts {second.delivery_count}"
            )
            await second.ack()

    @guarantee(
        "settle.nack_order",
        MUST,
        env=BROKER_ENV,
        requires=("fifo",),
        rests_on=("settle.nack_requeue", "broker.fifo"),
    )
    async def test_nack_order(self, env: BrokerEnv) -> None:
        """MUST put a nack(requeue=True)'d message at the back of its queue, behind the
        messages that were ready when it was requeued."""
        broker = await env.broker()
        queue = env.queue()
        sent = await publish_unique(broker, queue, 3)
        async with broker.consume([queue], prefetch=1) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            assert first.body == sent[0], f"expected {sent[0]!r} first; got {first.body!r}"
            await first.nack(requeue=True)
            order = []
            for _ in sent:
                (delivery,) = await fetch_exactly(consumer, 1)
                order.append(delivery.body)
                await delivery.ack()
        expected = [*sent[1:], sent[0]]
        assert order == expected, (
            f"after {sent[0]!r} was nacked, expected the order {expected}; the broker "
            f"delivered {order}"
        )

    @guarantee("settle.nack_drop", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_nack_drop(self, env: BrokerEnv) -> None:
        """MUST drop a nack(requeue=False)'d message: it is not delivered again."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"drop", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.nack(requeue=False)
            await fetch_none(consumer, what="of a message nacked without requeue")
        await expect_counts(broker, queue, what="after nack(requeue=False)", ready=0, in_flight=0)

    @guarantee(
        "settle.nack_delay",
        MUST,
        env=BROKER_ENV,
        requires=("delayed_delivery",),
        rests_on=("settle.nack_requeue",),
    )
    async def test_nack_delay(self, env: BrokerEnv) -> None:
        """MUST hold a nack(delay=s)'d message back for s seconds, then deliver it again."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"later", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            due = in_seconds(1.5)
            await delivery.nack(requeue=True, delay=1.5)
            await fetch_none_before(consumer, due, what="before the 1.5 s nack delay passed")
            (again,) = await fetch_exactly(
                consumer, 1, within=env.harness.patience, what="after the nack delay"
            )
            assert again.body == b"later", f"expected b'later' again; got {again.body!r}"
            await again.ack()

    @guarantee(
        "settle.double_ack_harmless",
        MUST,
        env=BROKER_ENV,
        rests_on=("settle.ack_removes", "broker.counts"),
    )
    async def test_double_ack_harmless(self, env: BrokerEnv) -> None:
        """MUST treat a second settle of a settled delivery as a no-op touching nothing else."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 2)
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.ack()
            await delivery.ack()
            await delivery.nack(requeue=True)
            await expect_counts(
                broker,
                queue,
                what="after a second ack and a nack of an acked delivery (both no-ops)",
                ready=1,
                in_flight=0,
            )
            (other,) = await fetch_exactly(consumer, 1)
            assert other.body != delivery.body, (
                f"the acked message {delivery.body!r} came back after a nack of its settled "
                "delivery"
            )
            await other.ack()
            await fetch_none(consumer, what="after both messages were acked")

    @guarantee(
        "settle.after_close_error",
        MUST,
        env=BROKER_ENV,
        rests_on=("settle.ack_removes", "delivery.redeliver_on_close"),
    )
    async def test_after_close_error(self, env: BrokerEnv) -> None:
        """MUST raise DeliveryStateError when acking after the consumer closed (unless settled)."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 2)
        consumer = broker.consume([queue], prefetch=2)
        async with consumer:
            settled, held = await fetch_exactly(consumer, 2)
            await settled.ack()
        await settled.ack()  # already settled: harmless even after close
        try:
            await held.ack()
        except DeliveryStateError:
            pass
        else:
            raise AssertionError(
                "expected DeliveryStateError when acking a delivery its closed consumer had "
                "handed back; the ack returned normally"
            )
        async with broker.consume([queue], prefetch=2) as other:
            (back,) = await fetch_exactly(other, 1, what="of the delivery handed back on close")
            assert back.body == held.body, (
                f"expected the handed-back {held.body!r}; the broker delivered {back.body!r}"
            )
            await back.ack()

    @guarantee("settle.retry", MUST, env=BROKER_ENV, rests_on=("settle.ack_removes",))
    async def test_retry(self, env: BrokerEnv) -> None:
        """MUST replace a delivery by Delivery.retry: the new message comes, the old is gone."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"attempt-1", {"n": "1"})
        async with broker.consume([queue], prefetch=2) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.retry(b"attempt-2", {"n": "2"}, not_before=None)
            got = await fetch_exactly(consumer, 1, what="of the replacement published by retry")
            assert (bodies(got), dict(got[0].headers)) == ([b"attempt-2"], {"n": "2"}), (
                f"expected the replacement b'attempt-2' {{'n': '2'}}; the broker delivered "
                f"{bodies(got)} {dict(got[0].headers)}"
            )
            assert got[0].delivery_count == 1, (
                f"the replacement is a new message counting delivery 1; it counts "
                f"{got[0].delivery_count}"
            )
            await got[0].ack()
            await fetch_none(consumer, what="of the retried original")
