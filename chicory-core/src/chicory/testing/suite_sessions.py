"""Session-bound leases: deliveries held as long as the consumer's connection lives.

Mixed into :class:`~chicory.testing.BrokerDeliverySuite`; the tests run for brokers declaring
``lease_model="session"`` (RabbitMQ-like) and need a way to sever a consumer's connection
(``BrokerHarness.sever``, or the consumer's own ``sever()``). Severing is what a network
failure or a killed process does: no clean close, no hand-back by the client.
"""

from __future__ import annotations

from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    bodies,
    describe,
    expect_counts,
    fetch_exactly,
    fetch_none,
    publish_unique,
)

__all__ = ["SessionGuarantees"]

MUST = Level.MUST
AREA = "BrokerDeliverySuite"
SESSION = ("lease_model=session",)


class SessionGuarantees:
    """Guarantees of brokers whose holds last as long as a consumer's session."""

    @guarantee(
        "session.redeliver_on_disconnect",
        MUST,
        env=BROKER_ENV,
        requires=SESSION,
        needs=("sever",),
        rests_on=("delivery.redeliver_on_close",),
        area=AREA,
    )
    async def test_redeliver_on_disconnect(self, env: BrokerEnv) -> None:
        """MUST make the unsettled deliveries of a consumer whose connection was severed
        ready again at once, for any consumer."""
        broker = await env.broker()
        queue = env.queue()
        sent = await publish_unique(broker, queue, 2)
        async with broker.consume([queue], prefetch=2) as holder:
            held = await fetch_exactly(holder, 2)
            await env.sever(holder)
            async with broker.consume([queue], prefetch=2) as other:
                again = await fetch_exactly(
                    other,
                    2,
                    within=env.harness.patience,
                    what="to another consumer after the holder's connection was severed",
                )
                assert sorted(bodies(again)) == sent, (
                    f"expected {sent} again; the broker delivered {describe(again)}"
                )
                assert {d.message_id for d in again} == {d.message_id for d in held}, (
                    "the messages of the severed session came back under other ids"
                )
                counts = [d.delivery_count for d in again]
                assert counts == [2, 2], f"the redeliveries count {counts}, not [2, 2]"
                await other.ack_many(again)

    @guarantee(
        "session.held_while_connected",
        MUST,
        env=BROKER_ENV,
        requires=SESSION,
        rests_on=("broker.round_trip",),
        area=AREA,
    )
    async def test_held_while_connected(self, env: BrokerEnv) -> None:
        """MUST never hand a delivery to another consumer while its holder's session lives,
        however long that is and without any renewal."""
        broker = await env.lease_broker()
        queue = env.queue()
        await broker.publish(queue, b"held", {})
        wait = 2.5 * env.harness.short_lease
        async with (
            broker.consume([queue], prefetch=1) as holder,
            broker.consume([queue], prefetch=1) as other,
        ):
            (held,) = await fetch_exactly(holder, 1)
            await fetch_none(
                other,
                wait=wait,
                what=f"to another consumer during {wait:g} s of a live session (a session "
                "lease has no timeout)",
            )
            lost = await holder.ack_many([held])
            assert not lost, f"ack_many reported a live session's delivery lost: {describe(lost)}"
        await expect_counts(broker, queue, what="after the holder acked", ready=0, in_flight=0)

    @guarantee(
        "session.stale_settle_reported",
        MUST,
        env=BROKER_ENV,
        requires=SESSION,
        needs=("sever",),
        rests_on=("session.redeliver_on_disconnect", "settle.ack_many"),
        area=AREA,
    )
    async def test_stale_settle_reported(self, env: BrokerEnv) -> None:
        """MUST report a delivery of a severed session as lost when it is settled after the
        consumer reconnected, and never let it act on the message delivered again."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"delivered twice", {})
        async with broker.consume([queue], prefetch=2) as consumer:
            (old,) = await fetch_exactly(consumer, 1)
            await env.sever(consumer)
            (again,) = await fetch_exactly(
                consumer,
                1,
                within=env.harness.patience,
                what="to the same consumer, reconnected after its session was severed",
            )
            await old.ack()
            await old.nack(requeue=True)
            await old.dead_letter("settled through a stale handle")
            await expect_counts(
                broker,
                queue,
                what="after settles of a severed session's delivery (they must do nothing)",
                ready=0,
                in_flight=1,
                dead=0,
            )
            lost = list(await consumer.ack_many([old, again]) or ())
            reported_old = len(lost) == 1 and lost[0] is old
            assert reported_old, (
                f"expected ack_many to report the severed session's delivery as lost and ack "
                f"the new one; it reported {describe(lost)}"
            )
            await fetch_none(consumer, what="after the new delivery was acked")
        await expect_counts(broker, queue, what="at the end", ready=0, in_flight=0, dead=0)
