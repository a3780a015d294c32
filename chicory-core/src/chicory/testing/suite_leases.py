"""Timed leases: the declared lease, how long it lasts, late renewals, and settling after loss.

Mixed into :class:`~chicory.testing.BrokerDeliverySuite`. Brokers are opened with the
harness's ``short_lease`` (1 s by default); every test here runs for a few leases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs

from chicory.broker import Broker, Consumer, Delivery
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import describe, expect_counts, fetch_exactly, fetch_none

__all__ = ["LeaseGuarantees"]

MUST = Level.MUST
AREA = "BrokerDeliverySuite"
LEASES = ("lease_renewal",)
GRANULARITY = 1.0
"""How far a declared lease may be from the one asked for (brokers round to whole seconds)."""


@attrs.frozen
class LostLease:
    """A delivery whose lease expired and whose message a second consumer now holds."""

    broker: Broker
    queue: str
    lapsed: Delivery
    rescuer: Consumer
    again: Delivery


@asynccontextmanager
async def lost_lease(env: BrokerEnv) -> AsyncIterator[LostLease]:
    """Let one consumer's lease on a message expire and a second consumer take it over."""
    broker = await env.lease_broker()
    queue = env.queue()
    await broker.publish(queue, b"taken over", {"h": "1"})
    async with (
        broker.consume([queue], prefetch=1) as stale,
        broker.consume([queue], prefetch=1) as rescuer,
    ):
        (lapsed,) = await fetch_exactly(stale, 1)
        (again,) = await fetch_exactly(
            rescuer, 1, within=env.harness.patience, what="to a second consumer after the lease"
        )
        yield LostLease(broker=broker, queue=queue, lapsed=lapsed, rescuer=rescuer, again=again)


async def _new_holder_keeps_it(env: BrokerEnv, lost: LostLease, after: str) -> None:
    """The second consumer still holds the message alone, and its ack goes through."""
    await expect_counts(
        lost.broker, lost.queue, what=f"after {after}", ready=0, in_flight=1, delayed=0
    )
    async with lost.broker.consume([lost.queue], prefetch=10) as third:
        await fetch_none(third, what=f"after {after}: the message belongs to its new holder")
    refused = await lost.rescuer.ack_many([lost.again])
    assert not refused, (
        f"after {after}, the new holder's ack was refused as a lost lease: the late settle "
        "took the message back"
    )
    await expect_counts(lost.broker, lost.queue, what="after the new holder acked", ready=0)


class LeaseGuarantees:
    """Guarantees of brokers whose holds are timed leases (``lease_renewal``)."""

    @guarantee("lease.declared", MUST, env=BROKER_ENV, requires=LEASES, area=AREA)
    async def test_declared(self, env: BrokerEnv) -> None:
        """MUST declare Capabilities.lease_seconds, the lease it keeps, when it declares
        lease_renewal (workers renew every third of it)."""
        asked = env.harness.short_lease
        broker = await env.lease_broker()
        declared = broker.capabilities.lease_seconds
        assert declared is not None, (
            f"a broker built with lease_seconds={asked:g} declares lease_renewal but no "
            "lease_seconds: workers then renew every 10 s whatever the real lease, and a task "
            f"running longer than {asked:g} s is delivered again while it runs; declare "
            "Capabilities.lease_seconds"
        )
        kept = declared > 0 and abs(declared - asked) <= GRANULARITY
        assert kept, (
            f"a broker built with lease_seconds={asked:g} declares lease_seconds={declared!r}; "
            f"it must declare the lease it keeps ({asked:g}, or that rounded by at most "
            f"{GRANULARITY:g} s)"
        )

    @guarantee(
        "lease.duration",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=("lease.declared", "delivery.redeliver_on_lease_expiry"),
        area=AREA,
    )
    async def test_duration(self, env: BrokerEnv) -> None:
        """MUST keep an unsettled delivery from other consumers for its declared lease, timed
        on one clock, and hand it out again once the lease is over."""
        broker = await env.lease_broker()
        lease = broker.capabilities.lease_seconds or env.harness.short_lease
        queue = env.queue()
        await broker.publish(queue, b"leased", {})
        async with (
            broker.consume([queue], prefetch=1) as holder,
            broker.consume([queue], prefetch=1) as other,
        ):
            (held,) = await fetch_exactly(holder, 1)
            start = anyio.current_time()
            window = lease - env.harness.clock_tolerance - (anyio.current_time() - start)
            await fetch_none(
                other,
                wait=window,
                what=f"to another consumer within the declared {lease:g} s lease (the lease "
                "ran out early: is it timed on two clocks, or shorter than declared?)",
            )
            (again,) = await fetch_exactly(
                other, 1, within=env.harness.patience, what=f"after the {lease:g} s lease ended"
            )
            assert again.message_id == held.message_id, "another message came after the lease"
            await again.ack()

    @guarantee(
        "lease.late_renewal",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=("delivery.lease_extension",),
        area=AREA,
    )
    async def test_late_renewal(self, env: BrokerEnv) -> None:
        """MUST keep a delivery whose lease is renewed late but before it ends: each renewal
        gives a full lease from the moment it reaches the broker."""
        broker = await env.lease_broker(scale=1.5)
        lease = broker.capabilities.lease_seconds or env.harness.short_lease * 1.5
        queue = env.queue()
        await broker.publish(queue, b"renewed late", {})
        async with (
            broker.consume([queue], prefetch=1) as holder,
            broker.consume([queue], prefetch=1) as other,
        ):
            (held,) = await fetch_exactly(holder, 1)
            for renewal in (1, 2):
                await fetch_none(
                    other,
                    wait=0.65 * lease,
                    what=f"to another consumer before renewal {renewal}, which came at 65% of "
                    f"a {lease:g} s lease",
                )
                await held.extend_lease()
            await fetch_none(
                other, wait=0.5 * lease, what="after two renewals each at 65% of the lease"
            )
            lost = await holder.ack_many([held])
            assert not lost, (
                f"ack_many reported the lease lost although every renewal came in time: "
                f"{describe(list(lost or ()))}"
            )

    @guarantee(
        "lease.lost_retry",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=("delivery.ack_reports_lost_lease", "settle.retry"),
        area=AREA,
    )
    async def test_lost_retry(self, env: BrokerEnv) -> None:
        """MUST publish nothing and settle nothing when retry comes after the lease was lost
        and the message went to another consumer."""
        async with lost_lease(env) as lost:
            await lost.lapsed.retry(b"replacement", {"n": "2"}, not_before=None)
            await _new_holder_keeps_it(env, lost, "a retry of a lost lease")

    @guarantee(
        "lease.lost_nack",
        MUST,
        env=BROKER_ENV,
        requires=LEASES,
        rests_on=("delivery.ack_reports_lost_lease", "settle.nack_requeue"),
        area=AREA,
    )
    async def test_lost_nack(self, env: BrokerEnv) -> None:
        """MUST ignore nack and extend_lease of a lost lease: no requeued copy, and the
        message stays with its new holder."""
        async with lost_lease(env) as lost:
            await lost.lapsed.nack(requeue=True)
            await lost.lapsed.extend_lease()
            await _new_holder_keeps_it(env, lost, "a nack and a renewal of a lost lease")

    @guarantee(
        "lease.lost_dead_letter",
        MUST,
        env=BROKER_ENV,
        requires=(*LEASES, "dead_letter"),
        rests_on=("delivery.ack_reports_lost_lease", "deadletter.move_and_list"),
        area=AREA,
    )
    async def test_lost_dead_letter(self, env: BrokerEnv) -> None:
        """MUST record no dead letter and leave the message to its new holder when
        dead_letter comes after the lease was lost."""
        async with lost_lease(env) as lost:
            await lost.lapsed.dead_letter("failed after its lease was lost")
            dead = await lost.broker.dead_letters(lost.queue)
            assert not dead, (
                f"a dead_letter of a lost lease recorded {len(dead)} dead letter(s) while "
                "another consumer holds the message"
            )
            await _new_holder_keeps_it(env, lost, "a dead_letter of a lost lease")
