"""Dead letters: moving, listing, replaying, deleting and purging them."""

from __future__ import annotations

from chicory.broker import Broker, DeadLetter
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import fetch_exactly, fetch_none, publish_unique, wait_until

__all__ = ["DeadLetterSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
DL = ("dead_letter",)
DL_COUNT = ("dead_letter", "dead_letter_max_count")
DL_AGE = ("dead_letter", "dead_letter_max_age")


async def _dead_letter_all(broker: Broker, queue: str, count: int) -> list[bytes]:
    """Publish ``count`` messages and dead-letter them; their bodies, in dead-letter order."""
    await publish_unique(broker, queue, count, prefix="dead")
    buried: list[bytes] = []
    async with broker.consume([queue], prefetch=count) as consumer:
        for delivery in await fetch_exactly(consumer, count):
            await delivery.dead_letter(f"reason for {delivery.body.decode()}")
            buried.append(delivery.body)
    return buried


class DeadLetterSuite:
    """Subclass with an empty body (``class TestDeadLetters(DeadLetterSuite): pass``)."""

    @guarantee("deadletter.move_and_list", MUST, env=BROKER_ENV, requires=DL)
    async def test_move_and_list(self, env: BrokerEnv) -> None:
        """MUST move a dead-lettered message out of circulation and list it with its reason."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"\x00poison", {"task": "t"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.dead_letter("unknown task 't'")
            await fetch_none(consumer, what="of a dead-lettered message")
        counts = await broker.counts(queue)
        assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 1), counts
        (dead,) = await broker.dead_letters(queue)
        assert isinstance(dead, DeadLetter)
        assert (dead.queue, dead.body, dict(dead.headers)) == (queue, b"\x00poison", {"task": "t"})
        assert dead.reason == "unknown task 't'"
        assert dead.delivery_count == 1
        assert dead.dead_at.tzinfo is not None, "dead_at must be an aware datetime"

    @guarantee("deadletter.list_order", MUST, env=BROKER_ENV, requires=DL)
    async def test_list_order(self, env: BrokerEnv) -> None:
        """MUST list dead letters oldest first, at most `limit` of them, per queue."""
        broker = await env.broker()
        queue, other = env.queue("a"), env.queue("b")
        sent = await _dead_letter_all(broker, queue, 4)
        listed = await broker.dead_letters(queue)
        assert sorted(d.body for d in listed) == sorted(sent)
        assert [d.dead_at for d in listed] == sorted(d.dead_at for d in listed), "not oldest first"
        assert len(await broker.dead_letters(queue, limit=2)) == 2
        assert await broker.dead_letters(other) == []

    @guarantee("deadletter.replay", MUST, env=BROKER_ENV, requires=DL)
    async def test_replay(self, env: BrokerEnv) -> None:
        """MUST put a replayed dead letter back on its queue with the same body and headers."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"replay-me", {"h": "v"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.dead_letter("boom")
            (dead,) = await broker.dead_letters(queue)
            assert await broker.replay_dead_letter(queue, dead.id) is True
            assert await broker.dead_letters(queue) == []
            (again,) = await fetch_exactly(consumer, 1)
            assert (again.body, dict(again.headers)) == (b"replay-me", {"h": "v"})
            await again.ack()
        assert await broker.replay_dead_letter(queue, dead.id) is False, "replayed twice"
        assert (await broker.counts(queue)).dead == 0

    @guarantee("deadletter.delete", MUST, env=BROKER_ENV, requires=DL)
    async def test_delete(self, env: BrokerEnv) -> None:
        """MUST delete exactly the named dead letter, and report False for an unknown id."""
        broker = await env.broker()
        queue = env.queue()
        await _dead_letter_all(broker, queue, 2)
        first, second = await broker.dead_letters(queue)
        assert await broker.delete_dead_letter(queue, first.id) is True
        assert [d.id for d in await broker.dead_letters(queue)] == [second.id]
        assert await broker.delete_dead_letter(queue, first.id) is False
        assert (await broker.counts(queue)).dead == 1

    @guarantee("deadletter.purge", MUST, env=BROKER_ENV, requires=DL)
    async def test_purge(self, env: BrokerEnv) -> None:
        """MUST purge every dead letter of one queue, return how many, and spare other queues."""
        broker = await env.broker()
        queue, other = env.queue("a"), env.queue("b")
        await _dead_letter_all(broker, queue, 3)
        await _dead_letter_all(broker, other, 1)
        assert await broker.purge_dead_letters(queue) == 3
        assert await broker.dead_letters(queue) == []
        assert (await broker.counts(queue)).dead == 0
        assert await broker.purge_dead_letters(queue) == 0
        assert len(await broker.dead_letters(other)) == 1, "purge touched another queue"

    @guarantee("deadletter.after_ack_copy", SHOULD, env=BROKER_ENV, requires=DL)
    async def test_after_ack_copy(self, env: BrokerEnv) -> None:
        """SHOULD record a copy when dead_letter follows ack (at-most-once failures need it)."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"pre-acked", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.ack()
            await delivery.dead_letter("failed after its pre-ack")
            await fetch_none(consumer, what="of an acked, then dead-lettered message")
        (dead,) = await broker.dead_letters(queue)
        assert (dead.body, dead.reason) == (b"pre-acked", "failed after its pre-ack")

    @guarantee("deadletter.max_count", MUST, env=BROKER_ENV, requires=DL_COUNT)
    async def test_max_count(self, env: BrokerEnv) -> None:
        """MUST keep at most dead_letter_max_count dead letters per queue, dropping the oldest."""
        broker = await env.broker_with_dead_letter_limits(max_count=3, max_age=3600.0)
        queue, other = env.queue("a"), env.queue("b")
        buried = await _dead_letter_all(broker, queue, 5)
        spared = await _dead_letter_all(broker, other, 2)
        listed = [d.body for d in await broker.dead_letters(queue)]
        assert listed == buried[2:], f"kept {listed}, not the newest three of {buried}"
        assert (await broker.counts(queue)).dead == 3
        assert [d.body for d in await broker.dead_letters(other)] == spared

    @guarantee("deadletter.max_age", MUST, env=BROKER_ENV, requires=DL_AGE)
    async def test_max_age(self, env: BrokerEnv) -> None:
        """MUST neither list nor count a dead letter older than dead_letter_max_age."""
        broker = await env.broker_with_dead_letter_limits(max_count=100, max_age=1.0)
        queue = env.queue()
        await _dead_letter_all(broker, queue, 2)

        async def dropped() -> bool:
            return await broker.dead_letters(queue) == []

        await wait_until(dropped, within=env.harness.patience + 1.0, what="expiry of dead letters")
        assert (await broker.counts(queue)).dead == 0
        fresh = await _dead_letter_all(broker, queue, 1)
        assert [d.body for d in await broker.dead_letters(queue)] == fresh
