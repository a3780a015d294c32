"""Settling deliveries: ack, nack, retry, and what settling twice or too late does."""

from __future__ import annotations

from chicory.errors import DeliveryStateError
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    bodies,
    fetch_exactly,
    fetch_none,
    fetch_none_before,
    in_seconds,
    publish_unique,
)

__all__ = ["BrokerSettlementSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD


class BrokerSettlementSuite:
    """Subclass with an empty body (``class TestSettlement(BrokerSettlementSuite): pass``)."""

    @guarantee("settle.ack_removes", MUST, env=BROKER_ENV)
    async def test_ack_removes(self, env: BrokerEnv) -> None:
        """MUST remove an acked message for good: not counted, not redelivered after close."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"acked", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.ack()
            counts = await broker.counts(queue)
            assert (counts.ready, counts.in_flight) == (0, 0), f"acked but still counted: {counts}"
        async with broker.consume([queue], prefetch=1) as consumer:
            await fetch_none(consumer, what="of an acked message")

    @guarantee("settle.ack_many", MUST, env=BROKER_ENV)
    async def test_ack_many(self, env: BrokerEnv) -> None:
        """MUST remove every message acked together with Consumer.ack_many."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 5)
        async with broker.consume([queue], prefetch=10) as consumer:
            got = await fetch_exactly(consumer, 5)
            await consumer.ack_many(got)
        async with broker.consume([queue], prefetch=10) as consumer:
            await fetch_none(consumer, what="of messages acked with ack_many")
        counts = await broker.counts(queue)
        assert (counts.ready, counts.in_flight) == (0, 0), counts

    @guarantee("settle.nack_requeue", MUST, env=BROKER_ENV)
    async def test_nack_requeue(self, env: BrokerEnv) -> None:
        """MUST make a nack(requeue=True)'d message ready again at once, same id, count + 1."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"again", {"h": "1"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            await first.nack(requeue=True)
            (second,) = await fetch_exactly(consumer, 1)
            assert second.body == b"again"
            assert dict(second.headers) == {"h": "1"}
            assert second.message_id == first.message_id
            assert second.delivery_count == first.delivery_count + 1
            await second.ack()

    @guarantee("settle.nack_drop", MUST, env=BROKER_ENV)
    async def test_nack_drop(self, env: BrokerEnv) -> None:
        """MUST drop a nack(requeue=False)'d message: it is not delivered again."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"drop", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.nack(requeue=False)
            await fetch_none(consumer, what="of a message nacked without requeue")
        counts = await broker.counts(queue)
        assert (counts.ready, counts.in_flight) == (0, 0), counts

    @guarantee("settle.nack_delay", MUST, env=BROKER_ENV, requires=("delayed_delivery",))
    async def test_nack_delay(self, env: BrokerEnv) -> None:
        """MUST hold a nack(delay=s)'d message back for s seconds, then deliver it again."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"later", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            due = in_seconds(1.5)
            await delivery.nack(requeue=True, delay=1.5)
            await fetch_none_before(consumer, due, what="before the nack delay passed")
            (again,) = await fetch_exactly(consumer, 1, within=env.harness.patience)
            assert again.body == b"later"
            await again.ack()

    @guarantee("settle.double_ack_harmless", MUST, env=BROKER_ENV)
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
            counts = await broker.counts(queue)
            assert (counts.ready, counts.in_flight) == (1, 0), (
                f"a second settle changed the queue: {counts}"
            )
            (other,) = await fetch_exactly(consumer, 1)
            assert other.body != delivery.body, "the acked message came back"
            await other.ack()
            await fetch_none(consumer, what="after both messages were acked")

    @guarantee("settle.after_close_error", MUST, env=BROKER_ENV)
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
            raise AssertionError("ack after the consumer closed did not raise DeliveryStateError")
        async with broker.consume([queue], prefetch=2) as other:
            (back,) = await fetch_exactly(other, 1)
            assert back.body == held.body, "the unsettled delivery was not handed back on close"
            await back.ack()

    @guarantee("settle.retry", MUST, env=BROKER_ENV)
    async def test_retry(self, env: BrokerEnv) -> None:
        """MUST replace a delivery by Delivery.retry: the new message comes, the old is gone."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"attempt-1", {"n": "1"})
        async with broker.consume([queue], prefetch=2) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.retry(b"attempt-2", {"n": "2"}, not_before=None)
            got = await fetch_exactly(consumer, 1)
            assert bodies(got) == [b"attempt-2"]
            assert dict(got[0].headers) == {"n": "2"}
            await got[0].ack()
            await fetch_none(consumer, what="of the retried original")
