"""Who gets a message when: concurrent consumers, redelivery, leases, delays, prefetch.

The suite also holds the lease guarantees (:mod:`chicory.testing.suite_leases`) and those of
session-bound leases (:mod:`chicory.testing.suite_sessions`).
"""

from __future__ import annotations

from collections import Counter

import anyio
import anyio.lowlevel

from chicory.broker import Consumer, Delivery
from chicory.clock import utcnow
from chicory.errors import BrokerError
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    QUIET,
    bodies,
    describe,
    expect_counts,
    fetch_exactly,
    fetch_none,
    fetch_none_before,
    in_seconds,
    publish_unique,
)
from chicory.testing.suite_leases import LeaseGuarantees
from chicory.testing.suite_sessions import SessionGuarantees

__all__ = ["BrokerDeliverySuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
ROUND_TRIP = ("broker.round_trip",)
LEASES = ("lease_renewal",)


class BrokerDeliverySuite(LeaseGuarantees, SessionGuarantees):
    """Subclass with an empty body (``class TestDelivery(BrokerDeliverySuite): pass``)."""

    @guarantee(
        "delivery.no_duplicates", MUST, env=BROKER_ENV, rests_on=(*ROUND_TRIP, "settle.ack_many")
    )
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
        assert not twice, (
            f"expected each message to reach one of 3 concurrent consumers; the broker "
            f"delivered these to more than one: {twice[:10]}"
        )
        assert len(seen) == total, (
            f"expected all {total} messages to be delivered; the broker delivered {len(seen)}"
        )

    @guarantee("delivery.redeliver_on_close", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_redeliver_on_close(self, env: BrokerEnv) -> None:
        """MUST make a closed consumer's unsettled deliveries ready at once, not after a lease."""
        broker = await env.broker()  # long lease: only the hand-back can redeliver in time
        queue = env.queue()
        sent = await publish_unique(broker, queue, 3)
        async with broker.consume([queue], prefetch=3) as first:
            held = await fetch_exactly(first, 3)
        async with broker.consume([queue], prefetch=3) as second:
            again = await fetch_exactly(
                second, 3, within=env.harness.patience, what="of deliveries a closed consumer held"
            )
            assert sorted(d.body for d in again) == sent, (
                f"expected {sent} back; the broker delivered {sorted(bodies(again))}"
            )
            counts = [d.delivery_count for d in again]
            assert counts == [2, 2, 2], (
                f"handed-back messages are delivered a second time (count 2); they count {counts}"
            )
            assert {d.message_id for d in again} == {d.message_id for d in held}, (
                "handed-back messages came back under other message ids"
            )
            await second.ack_many(again)

    @guarantee(
        "delivery.redeliver_on_lease_expiry",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=ROUND_TRIP,
    )
    async def test_redeliver_on_lease_expiry(self, env: BrokerEnv) -> None:
        """MUST redeliver unsettled work to another consumer once its lease expired."""
        broker = await env.lease_broker()
        queue = env.queue()
        await broker.publish(queue, b"orphan", {})
        async with (
            broker.consume([queue], prefetch=1) as stuck,
            broker.consume([queue], prefetch=1) as rescuer,
        ):
            (held,) = await fetch_exactly(stuck, 1)
            (again,) = await fetch_exactly(
                rescuer,
                1,
                within=env.harness.patience,
                what=f"to a second consumer after a {env.harness.short_lease:g} s lease expired",
            )
            assert again.body == b"orphan", f"expected b'orphan'; got {again.body!r}"
            assert again.message_id == held.message_id, (
                f"the redelivered message has id {again.message_id!r}, not {held.message_id!r}"
            )
            assert again.delivery_count == 2, (
                f"a redelivery after a lapsed lease counts 2; it counts {again.delivery_count}"
            )
            await again.ack()

    @guarantee(
        "delivery.ack_reports_lost_lease",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=("delivery.redeliver_on_lease_expiry", "settle.ack_many"),
    )
    async def test_ack_reports_lost_lease(self, env: BrokerEnv) -> None:
        """MUST return, from ack_many, a delivery whose lease expired and that was delivered
        again, and leave the new delivery alone (an at-most-once worker does not run it)."""
        broker = await env.lease_broker()
        queue = env.queue()
        await broker.publish(queue, b"taken over", {})
        async with (
            broker.consume([queue], prefetch=2) as stale,
            broker.consume([queue], prefetch=1) as rescuer,
        ):
            (lapsed,) = await fetch_exactly(stale, 1)
            (again,) = await fetch_exactly(
                rescuer, 1, within=env.harness.patience, what="after the lease expired"
            )
            await broker.publish(queue, b"kept", {})
            (kept,) = await fetch_exactly(stale, 1)  # a fresh lease: this ack goes through
            lost = list(await stale.ack_many([kept, lapsed]) or ())
            reported = len(lost) == 1 and lost[0] is lapsed
            assert reported, (
                f"expected ack_many to return exactly the delivery whose lease was lost; it "
                f"returned {describe(lost)}"
            )
            await expect_counts(
                broker,
                queue,
                what="after a late ack of a lost lease (the new holder still holds it)",
                ready=0,
                in_flight=1,
            )
            not_acked = await rescuer.ack_many([again])
            assert not not_acked, "the new holder's ack of the redelivered message was refused"
            await fetch_none(rescuer, what="of a message acked by its new holder")

    @guarantee(
        "delivery.lease_extension",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=("delivery.redeliver_on_lease_expiry",),
    )
    async def test_lease_extension(self, env: BrokerEnv) -> None:
        """MUST not redeliver a delivery whose lease its holder keeps extending."""
        broker = await env.lease_broker(scale=1.5)
        lease = env.harness.short_lease * 1.5
        queue = env.queue()
        await publish_unique(broker, queue, 2)
        async with (
            broker.consume([queue], prefetch=2) as holder,
            broker.consume([queue], prefetch=2) as other,
        ):
            held = await fetch_exactly(holder, 2)
            for round_ in range(8):  # 8 renewals a fifth of a lease apart: 1.6 leases
                if round_ % 2:
                    await holder.extend_leases(held)
                else:
                    for delivery in held:
                        await delivery.extend_lease()
                await fetch_none(
                    other, wait=lease / 5, what="to another consumer while the lease is extended"
                )
            lost = await holder.ack_many(held)
            assert not lost, f"ack_many reported extended leases as lost: {describe(lost or [])}"

    @guarantee(
        "delivery.delayed_not_before",
        MUST,
        env=BROKER_ENV,
        requires=("delayed_delivery",),
        rests_on=ROUND_TRIP,
    )
    async def test_delayed_not_before(self, env: BrokerEnv) -> None:
        """MUST not deliver a message published with not_before before that time."""
        broker = await env.broker()
        queue = env.queue()
        not_before = in_seconds(1.5)
        await broker.publish(queue, b"delayed", {}, not_before=not_before)
        await broker.publish(queue, b"now", {})
        async with broker.consume([queue], prefetch=5) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            assert first.body == b"now", (
                f"expected b'now' first; the broker delivered {first.body!r} 1.5 s before its "
                "not_before"
            )
            await first.ack()
            await fetch_none_before(consumer, not_before, what="before the message's not_before")
            (late,) = await fetch_exactly(
                consumer, 1, within=env.harness.patience, what="once not_before passed"
            )
            early = (not_before - utcnow()).total_seconds()
            assert early <= env.harness.clock_tolerance, (
                f"a message published with not_before was delivered {early:.3f} s early "
                f"(more than the {env.harness.clock_tolerance} s clock tolerance)"
            )
            assert late.body == b"delayed", f"expected b'delayed'; got {late.body!r}"
            await late.ack()

    @guarantee(
        "delivery.delayed_counts",
        SHOULD,
        env=BROKER_ENV,
        requires=("delayed_delivery",),
        rests_on=("broker.counts",),
    )
    async def test_delayed_counts(self, env: BrokerEnv) -> None:
        """SHOULD count a message waiting for its not_before as delayed, not ready."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"delayed", {}, not_before=in_seconds(30))
        await expect_counts(broker, queue, what="with one message due in 30 s", ready=0, delayed=1)

    @guarantee("delivery.prefetch_bound", MUST, env=BROKER_ENV, rests_on=("settle.ack_many",))
    async def test_prefetch_bound(self, env: BrokerEnv) -> None:
        """MUST not let a consumer hold more unsettled deliveries than its prefetch."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 5)
        async with broker.consume([queue], prefetch=2) as consumer:
            held = list(await consumer.fetch(10, timeout=1.0))
            assert len(held) <= 2, (
                f"expected at most 2 deliveries (the prefetch) from fetch(10); it returned "
                f"{len(held)}"
            )
            held.extend(await consumer.fetch(10, timeout=0.3))
            assert len(held) <= 2, (
                f"expected the consumer to hold at most its prefetch of 2; a second fetch "
                f"raised that to {len(held)}"
            )
            await consumer.ack_many(held)
            more = await fetch_exactly(consumer, 1, what="once acks freed prefetch room")
            await consumer.ack_many(more)

    @guarantee(
        "delivery.fetch_waits_for_room",
        SHOULD,
        env=BROKER_ENV,
        rests_on=("delivery.prefetch_bound", "settle.ack_removes"),
    )
    async def test_fetch_waits_for_room(self, env: BrokerEnv) -> None:
        """SHOULD let a fetch made while the prefetch is full take the room a settle frees
        while it waits, instead of sleeping through it."""
        broker = await env.broker()
        queue = env.queue()
        await publish_unique(broker, queue, 2)
        patience = env.harness.patience
        got: list[Delivery] = []
        async with broker.consume([queue], prefetch=1) as consumer:
            (held,) = await fetch_exactly(consumer, 1)
            none = await consumer.fetch(1, timeout=0.2)
            assert not none, (
                f"expected nothing from a fetch with the prefetch of 1 full; got {describe(none)}"
            )

            async def waiting_fetch() -> None:
                got.extend(await consumer.fetch(1, timeout=patience * 3))

            with anyio.move_on_after(patience):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiting_fetch)
                    await anyio.sleep(QUIET)
                    await held.ack()
            assert got, (
                f"expected the fetch waiting for room to deliver the next message once an ack "
                f"freed room; it was still waiting {patience:g} s later"
            )
            await consumer.ack_many(got)

    @guarantee("delivery.fetch_after_close", MUST, env=BROKER_ENV, rests_on=ROUND_TRIP)
    async def test_fetch_after_close(self, env: BrokerEnv) -> None:
        """MUST raise BrokerError from fetch on a closed consumer, and end a fetch waiting
        when its consumer closes with nothing."""
        broker = await env.broker()
        queue = env.queue()
        patience = env.harness.patience
        waiting = broker.consume([queue], prefetch=1)
        await waiting.__aenter__()
        ended: list[object] = []

        async def wait_then_note() -> None:
            ended.append(list(await waiting.fetch(1, timeout=patience * 3)))

        with anyio.move_on_after(patience):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_then_note)
                await anyio.sleep(QUIET)
                await waiting.close()
        assert ended == [[]], (
            f"expected a fetch waiting on a consumer that closed to return nothing at once; it "
            f"{'returned ' + repr(ended[0]) if ended else f'still waited {patience:g} s later'}"
        )
        await broker.publish(queue, b"for someone else", {})
        try:
            got = await waiting.fetch(1, timeout=0.2)
        except BrokerError:
            pass
        else:
            raise AssertionError(
                f"expected BrokerError from fetch on a closed consumer; it returned "
                f"{describe(list(got))}"
            )
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1, what="to an open consumer")
            await delivery.ack()

    @guarantee(
        "delivery.max_deliveries",
        SHOULD,
        env=BROKER_ENV,
        requires=("dead_letter",),
        rests_on=("settle.nack_requeue", "deadletter.move_and_list"),
    )
    async def test_max_deliveries(self, env: BrokerEnv) -> None:
        """SHOULD dead-letter a message instead of delivering it more than max_deliveries times."""
        broker = await env.broker(max_deliveries=2)
        queue = env.queue()
        await broker.publish(queue, b"poison", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            for attempt in (1, 2):
                (delivery,) = await fetch_exactly(consumer, 1)
                assert delivery.delivery_count == attempt, (
                    f"delivery {attempt} counts {delivery.delivery_count}"
                )
                await delivery.nack(requeue=True)
            await fetch_none(consumer, what="a third time with max_deliveries=2")
        dead = await broker.dead_letters(queue)
        assert [(d.body, d.delivery_count) for d in dead] == [(b"poison", 2)], (
            f"expected b'poison' dead-lettered after 2 deliveries; the dead letters are "
            f"{[(d.body, d.delivery_count) for d in dead]}"
        )


async def _close_later(consumer: Consumer) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await consumer.close()
