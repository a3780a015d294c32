"""Who gets a message when: concurrent consumers, redelivery, leases, delays, prefetch."""

from __future__ import annotations

from collections import Counter

import anyio
import anyio.lowlevel

from chicory.broker import Consumer
from chicory.clock import utcnow
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    QUIET,
    fetch_exactly,
    fetch_none,
    fetch_none_before,
    in_seconds,
    publish_unique,
)

__all__ = ["BrokerDeliverySuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD


class BrokerDeliverySuite:
    """Subclass with an empty body (``class TestDelivery(BrokerDeliverySuite): pass``)."""

    @guarantee("delivery.no_duplicates", MUST, env=BROKER_ENV)
    async def test_no_duplicates(self, env: BrokerEnv) -> None:
        """MUST never hand one un-failed message to two concurrent consumers."""
        broker = await env.broker()
        queue = env.queue()
        total = 40
        await publish_unique(broker, queue, total)
        seen: Counter[bytes] = Counter()
        all_seen = anyio.Event()

        async def consume(consumer: Consumer) -> None:
            while True:  # until cancelled: keeps listening after everything was acked
                got = await consumer.fetch(4, timeout=0.1)
                seen.update(delivery.body for delivery in got)
                if len(seen) >= total:
                    all_seen.set()
                await anyio.lowlevel.checkpoint()
                await consumer.ack_many(got)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                consumer = broker.consume([queue], prefetch=4)
                await consumer.__aenter__()
                tg.start_soon(consume, consumer)
                tg.start_soon(_close_later, consumer)
            with anyio.move_on_after(env.harness.patience):
                await all_seen.wait()
            await anyio.sleep(QUIET)  # anything delivered now is a duplicate
            tg.cancel_scope.cancel()
        twice = sorted(body for body, n in seen.items() if n > 1)
        assert not twice, f"delivered to more than one consumer: {twice[:10]}"
        assert len(seen) == total, f"only {len(seen)} of {total} messages were delivered"

    @guarantee("delivery.redeliver_on_close", MUST, env=BROKER_ENV)
    async def test_redeliver_on_close(self, env: BrokerEnv) -> None:
        """MUST make a closed consumer's unsettled deliveries ready at once, not after a lease."""
        broker = await env.broker()  # long lease: only the hand-back can redeliver in time
        queue = env.queue()
        sent = await publish_unique(broker, queue, 3)
        async with broker.consume([queue], prefetch=3) as first:
            held = await fetch_exactly(first, 3)
        async with broker.consume([queue], prefetch=3) as second:
            again = await fetch_exactly(second, 3, within=env.harness.patience)
            assert sorted(d.body for d in again) == sent
            assert all(d.delivery_count == 2 for d in again), [d.delivery_count for d in again]
            assert {d.message_id for d in again} == {d.message_id for d in held}
            await second.ack_many(again)

    @guarantee(
        "delivery.redeliver_on_lease_expiry", MUST, env=BROKER_ENV, requires=("lease_renewal",)
    )
    async def test_redeliver_on_lease_expiry(self, env: BrokerEnv) -> None:
        """MUST redeliver unsettled work to another consumer once its lease expired."""
        broker = await env.broker(lease_seconds=1.0)
        queue = env.queue()
        await broker.publish(queue, b"orphan", {})
        async with (
            broker.consume([queue], prefetch=1) as stuck,
            broker.consume([queue], prefetch=1) as rescuer,
        ):
            (held,) = await fetch_exactly(stuck, 1)
            (again,) = await fetch_exactly(rescuer, 1, within=env.harness.patience)
            assert again.body == b"orphan"
            assert again.message_id == held.message_id
            assert again.delivery_count == 2
            await again.ack()

    @guarantee("delivery.ack_reports_lost_lease", MUST, env=BROKER_ENV, requires=("lease_renewal",))
    async def test_ack_reports_lost_lease(self, env: BrokerEnv) -> None:
        """MUST return, from ack_many, a delivery whose lease expired and that was delivered
        again, and leave the new delivery alone (an at-most-once worker does not run it)."""
        broker = await env.broker(lease_seconds=1.0)
        queue = env.queue()
        await broker.publish(queue, b"taken over", {})
        async with (
            broker.consume([queue], prefetch=2) as stale,
            broker.consume([queue], prefetch=1) as rescuer,
        ):
            (lapsed,) = await fetch_exactly(stale, 1)
            (again,) = await fetch_exactly(rescuer, 1, within=env.harness.patience)
            assert again.message_id == lapsed.message_id
            await broker.publish(queue, b"kept", {})
            (kept,) = await fetch_exactly(stale, 1)  # a fresh lease: this ack goes through
            lost = await stale.ack_many([kept, lapsed])
            assert list(lost or ()) == [lapsed], (
                f"ack_many returned {lost!r}, not the one delivery whose lease was lost"
            )
            counts = await broker.counts(queue)
            assert (counts.ready, counts.in_flight) == (0, 1), (
                f"the late ack touched the new delivery, or the other ack failed: {counts}"
            )
            assert not await rescuer.ack_many([again]), "the new delivery could not be acked"
            await fetch_none(rescuer, what="of a message acked by its new holder")

    @guarantee("delivery.lease_extension", MUST, env=BROKER_ENV, requires=("lease_renewal",))
    async def test_lease_extension(self, env: BrokerEnv) -> None:
        """MUST not redeliver a delivery whose lease its holder keeps extending."""
        broker = await env.broker(lease_seconds=1.5)
        queue = env.queue()
        await publish_unique(broker, queue, 2)
        async with (
            broker.consume([queue], prefetch=2) as holder,
            broker.consume([queue], prefetch=2) as other,
        ):
            held = await fetch_exactly(holder, 2)
            for round_ in range(8):  # 8 x 0.3 s = 2.4 s, well past the 1.5 s lease
                if round_ % 2:
                    await holder.extend_leases(held)
                else:
                    for delivery in held:
                        await delivery.extend_lease()
                await fetch_none(other, wait=0.3, what="of a delivery whose lease is extended")
            await holder.ack_many(held)

    @guarantee("delivery.delayed_not_before", MUST, env=BROKER_ENV, requires=("delayed_delivery",))
    async def test_delayed_not_before(self, env: BrokerEnv) -> None:
        """MUST not deliver a message published with not_before before that time."""
        broker = await env.broker()
        queue = env.queue()
        not_before = in_seconds(1.5)
        await broker.publish(queue, b"delayed", {}, not_before=not_before)
        await broker.publish(queue, b"now", {})
        async with broker.consume([queue], prefetch=5) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            assert first.body == b"now", "a delayed message was delivered before its time"
            await first.ack()
            await fetch_none_before(consumer, not_before, what="before the message's not_before")
            (late,) = await fetch_exactly(consumer, 1, within=env.harness.patience)
            early = (not_before - utcnow()).total_seconds()
            assert early <= env.harness.clock_tolerance, f"delivered {early:.3f} s early"
            assert late.body == b"delayed"
            await late.ack()

    @guarantee("delivery.delayed_counts", SHOULD, env=BROKER_ENV, requires=("delayed_delivery",))
    async def test_delayed_counts(self, env: BrokerEnv) -> None:
        """SHOULD count a message waiting for its not_before as delayed, not ready."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"delayed", {}, not_before=in_seconds(30))
        counts = await broker.counts(queue)
        assert (counts.ready, counts.delayed) == (0, 1), counts

    @guarantee("delivery.prefetch_bound", MUST, env=BROKER_ENV)
    async def test_prefetch_bound(self, env: BrokerEnv) -> None:
        """MUST not let a consumer hold more unsettled deliveries than its prefetch."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 5)
        async with broker.consume([queue], prefetch=2) as consumer:
            held = list(await consumer.fetch(10, timeout=1.0))
            assert len(held) <= 2, f"fetch returned {len(held)} deliveries over a prefetch of 2"
            held.extend(await consumer.fetch(10, timeout=0.3))
            assert len(held) <= 2, f"consumer holds {len(held)} deliveries over a prefetch of 2"
            await consumer.ack_many(held)
            more = await fetch_exactly(consumer, 1)
            await consumer.ack_many(more)

    @guarantee("delivery.max_deliveries", SHOULD, env=BROKER_ENV, requires=("dead_letter",))
    async def test_max_deliveries(self, env: BrokerEnv) -> None:
        """SHOULD dead-letter a message instead of delivering it more than max_deliveries times."""
        broker = await env.broker(max_deliveries=2)
        queue = env.queue()
        await broker.publish(queue, b"poison", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            for attempt in (1, 2):
                (delivery,) = await fetch_exactly(consumer, 1)
                assert delivery.delivery_count == attempt
                await delivery.nack(requeue=True)
            await fetch_none(consumer, what="a third time with max_deliveries=2")
        (dead,) = await broker.dead_letters(queue)
        assert dead.body == b"poison"
        assert dead.delivery_count == 2, dead


async def _close_later(consumer: Consumer) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await consumer.close()
