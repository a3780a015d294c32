"""Cleaning up: deleting a queue (the ``delete_queue`` capability) and the harness purge.

Mixed into :class:`~chicory.testing.BrokerBasicsSuite`, so a plugin's ``TestBasics`` runs
these guarantees too.
"""

from __future__ import annotations

from chicory.broker import Broker, QueueCounts, delete_queue
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    expect_counts,
    fetch_exactly,
    fetch_none,
    in_seconds,
    publish_unique,
)

__all__ = ["CleanupGuarantees"]

MUST, SHOULD = Level.MUST, Level.SHOULD
AREA = "BrokerBasicsSuite"


async def _fill(env: BrokerEnv, broker: Broker, queue: str) -> None:
    """Give ``queue`` ready messages and, where the broker can, a delayed and a dead one."""
    await publish_unique(broker, queue, 3, prefix=queue[-4:])
    if env.capabilities.delayed_delivery:
        await broker.publish(queue, b"delayed", {}, not_before=in_seconds(600))
    if env.capabilities.dead_letter:
        await broker.publish(queue, b"dead", {})
        async with broker.consume([queue], prefetch=10) as consumer:
            for delivery in await fetch_exactly(consumer, 4, what=f"to fill {queue!r}"):
                if delivery.body == b"dead":
                    await delivery.dead_letter("conformance clean-up test")


async def _expect_empty(env: BrokerEnv, broker: Broker, queue: str, what: str) -> None:
    counts = await broker.counts(queue)
    assert counts == QueueCounts(), (
        f"{what}: expected {queue!r} to count nothing (no ready, in-flight, delayed or dead "
        f"message); the broker counts {counts}"
    )
    if env.capabilities.dead_letter:
        dead = await broker.dead_letters(queue)
        assert not dead, f"{what}: {queue!r} still lists {len(dead)} dead letter(s)"


class CleanupGuarantees:
    """Guarantees about removing what tests (and operators) leave behind."""

    @guarantee(
        "cleanup.delete_queue",
        MUST,
        env=BROKER_ENV,
        requires=("delete_queue",),
        rests_on=("broker.counts",),
        area=AREA,
    )
    async def test_delete_queue(self, env: BrokerEnv) -> None:
        """MUST delete with delete_queue every message of a queue (ready, delayed, dead),
        spare other queues, and start the queue afresh when it is used again."""
        broker = await env.broker()
        doomed, spared = env.queue("doomed"), env.queue("spared")
        await _fill(env, broker, doomed)
        await broker.publish(spared, b"kept", {})
        await delete_queue(broker, doomed)
        await _expect_empty(env, broker, doomed, "after delete_queue")
        async with broker.consume([doomed], prefetch=10) as consumer:
            await fetch_none(consumer, what="from a deleted queue")
        await expect_counts(broker, spared, what="another queue after delete_queue", ready=1)
        await broker.publish(doomed, b"again", {})
        async with broker.consume([doomed], prefetch=10) as consumer:
            (again,) = await fetch_exactly(consumer, 1, what="published after delete_queue")
            assert again.body == b"again", f"expected b'again'; delivered {again.body!r}"
            assert again.delivery_count == 1, (
                f"a message of a queue used again after delete_queue counts delivery "
                f"{again.delivery_count}, not 1"
            )
            await again.ack()

    @guarantee(
        "cleanup.purge",
        SHOULD,
        env=BROKER_ENV,
        requires=("delete_queue|harness.purge",),
        rests_on=("broker.counts",),
        area=AREA,
    )
    async def test_purge(self, env: BrokerEnv) -> None:
        """SHOULD leave nothing of a test's queues after the harness purge, which gets the
        test's broker connected again even when the test closed it."""
        broker = await env.broker()
        queues = [env.queue("a"), env.queue("b")]
        for queue in queues:
            await _fill(env, broker, queue)
        await broker.close()  # as many tests do: the purge must still work
        assert await env.purge_now(), "no purge ran although one is declared"
        await broker.connect()
        for queue in queues:
            await _expect_empty(env, broker, queue, "after the harness purge")
