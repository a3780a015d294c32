"""Dead letters: moving, listing, replaying, deleting and purging them."""

from __future__ import annotations

from chicory.broker import Broker, DeadLetter
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    expect_counts,
    fetch_exactly,
    fetch_none,
    publish_unique,
)

__all__ = ["DeadLetterSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
DL = ("dead_letter",)
MOVED = ("deadletter.move_and_list",)


async def _dead_letter_all(broker: Broker, queue: str, count: int) -> list[bytes]:
    sent = await publish_unique(broker, queue, count, prefix="dead")
    async with broker.consume([queue], prefetch=count) as consumer:
        for delivery in await fetch_exactly(consumer, count):
            await delivery.dead_letter(f"reason for {delivery.body.decode()}")
    return sent


def _listed(dead: list[DeadLetter]) -> list[bytes]:
    return [d.body for d in dead]


class DeadLetterSuite:
    """Subclass with an empty body (``class TestDeadLetters(DeadLetterSuite): pass``)."""

    @guarantee(
        "deadletter.move_and_list",
        MUST,
        env=BROKER_ENV,
        requires=DL,
        rests_on=("broker.round_trip",),
    )
    async def test_move_and_list(self, env: BrokerEnv) -> None:
        """MUST move a dead-lettered message out of circulation and list it with its reason."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"\x00poison", {"task": "t"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.dead_letter("unknown task 't'")
            await fetch_none(consumer, what="of a dead-lettered message")
        await expect_counts(
            broker, queue, what="after one dead_letter", ready=0, in_flight=0, dead=1
        )
        listed = await broker.dead_letters(queue)
        assert len(listed) == 1, f"expected 1 dead letter; the broker lists {len(listed)}"
        (dead,) = listed
        assert isinstance(dead, DeadLetter), f"dead_letters() returned {type(dead).__name__}s"
        seen = (dead.queue, dead.body, dict(dead.headers))
        assert seen == (queue, b"\x00poison", {"task": "t"}), (
            f"expected the dead letter of {queue!r} with its body and headers; listed {seen}"
        )
        assert dead.reason == "unknown task 't'", f"the reason came back as {dead.reason!r}"
        assert dead.delivery_count == 1, (
            f"dead-lettered on its first delivery; listed with delivery_count {dead.delivery_count}"
        )
        assert dead.dead_at.tzinfo is not None, "dead_at must be an aware datetime"

    @guarantee("deadletter.list_order", MUST, env=BROKER_ENV, requires=DL, rests_on=MOVED)
    async def test_list_order(self, env: BrokerEnv) -> None:
        """MUST list dead letters oldest first, at most `limit` of them, per queue."""
        broker = await env.broker()
        queue, other = env.queue("a"), env.queue("b")
        sent = await _dead_letter_all(broker, queue, 4)
        listed = await broker.dead_letters(queue)
        assert sorted(_listed(listed)) == sorted(sent), (
            f"dead-lettered {sent}; the broker lists {_listed(listed)}"
        )
        times = [d.dead_at for d in listed]
        assert times == sorted(times), f"expected oldest first; dead_at in listed order: {times}"
        limited = await broker.dead_letters(queue, limit=2)
        assert len(limited) == 2, f"dead_letters(limit=2) listed {len(limited)}"
        others = await broker.dead_letters(other)
        assert others == [], f"another queue lists dead letters it never had: {_listed(others)}"

    @guarantee("deadletter.replay", MUST, env=BROKER_ENV, requires=DL, rests_on=MOVED)
    async def test_replay(self, env: BrokerEnv) -> None:
        """MUST put a replayed dead letter back on its queue with the same body and headers."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"replay-me", {"h": "v"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.dead_letter("boom")
            (dead,) = await broker.dead_letters(queue)
            assert await broker.replay_dead_letter(queue, dead.id) is True, (
                "replay_dead_letter of a listed dead letter did not return True"
            )
            left = await broker.dead_letters(queue)
            assert left == [], f"the replayed dead letter is still listed: {_listed(left)}"
            (again,) = await fetch_exactly(consumer, 1, what="of the replayed message")
            seen = (again.body, dict(again.headers))
            assert seen == (b"replay-me", {"h": "v"}), f"the replay came back as {seen}"
            await again.ack()
        assert await broker.replay_dead_letter(queue, dead.id) is False, (
            "a dead letter was replayed twice (the second replay_dead_letter returned True)"
        )
        await expect_counts(broker, queue, what="after the replay was acked", dead=0)

    @guarantee(
        "deadletter.replay_fresh",
        MUST,
        env=BROKER_ENV,
        requires=DL,
        rests_on=("deadletter.replay",),
    )
    async def test_replay_fresh(self, env: BrokerEnv) -> None:
        """MUST replay a dead letter as a new message: a new message id, a delivery count
        starting again at 1, at the back of the queue (behind the ready messages, if fifo)."""
        broker = await env.broker()
        queue = env.queue()
        await broker.publish(queue, b"poison", {})
        async with broker.consume([queue], prefetch=1) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            await first.nack(requeue=True)
            (second,) = await fetch_exactly(consumer, 1)
            await second.dead_letter("failed twice")
            (dead,) = await broker.dead_letters(queue)
            waiting = await publish_unique(broker, queue, 2, prefix="ready")
            assert await broker.replay_dead_letter(queue, dead.id) is True, (
                "replay_dead_letter of a listed dead letter did not return True"
            )
            order: list[bytes] = []
            for _ in range(3):
                (delivery,) = await fetch_exactly(consumer, 1, what="after the replay")
                order.append(delivery.body)
                if delivery.body == b"poison":
                    assert delivery.delivery_count == 1, (
                        f"a replayed message starts its delivery count again at 1 (else "
                        f"max_deliveries buries it at once); it counts {delivery.delivery_count}"
                    )
                    assert delivery.message_id != first.message_id, (
                        f"a replayed message gets a new message id; it kept {first.message_id!r}"
                    )
                await delivery.ack()
        if env.capabilities.fifo:
            expected = [*waiting, b"poison"]
            assert order == expected, (
                f"expected the replay behind the messages already ready: {expected}; the "
                f"broker delivered {order}"
            )

    @guarantee("deadletter.delete", MUST, env=BROKER_ENV, requires=DL, rests_on=MOVED)
    async def test_delete(self, env: BrokerEnv) -> None:
        """MUST delete exactly the named dead letter, and report False for an unknown id."""
        broker = await env.broker()
        queue = env.queue()
        await _dead_letter_all(broker, queue, 2)
        first, second = await broker.dead_letters(queue)
        assert await broker.delete_dead_letter(queue, first.id) is True, (
            "delete_dead_letter of a listed dead letter did not return True"
        )
        left = [d.id for d in await broker.dead_letters(queue)]
        assert left == [second.id], f"expected only {second.id!r} left; listed {left}"
        assert await broker.delete_dead_letter(queue, first.id) is False, (
            "deleting an already deleted dead letter returned True"
        )
        await expect_counts(broker, queue, what="after one of two was deleted", dead=1)

    @guarantee("deadletter.purge", MUST, env=BROKER_ENV, requires=DL, rests_on=MOVED)
    async def test_purge(self, env: BrokerEnv) -> None:
        """MUST purge every dead letter of one queue, return how many, and spare other queues."""
        broker = await env.broker()
        queue, other = env.queue("a"), env.queue("b")
        await _dead_letter_all(broker, queue, 3)
        await _dead_letter_all(broker, other, 1)
        purged = await broker.purge_dead_letters(queue)
        assert purged == 3, f"purge_dead_letters of 3 dead letters returned {purged}"
        left = await broker.dead_letters(queue)
        assert left == [], f"purged dead letters are still listed: {_listed(left)}"
        await expect_counts(broker, queue, what="after purge_dead_letters", dead=0)
        again = await broker.purge_dead_letters(queue)
        assert again == 0, f"purging an empty dead-letter list returned {again}"
        spared = await broker.dead_letters(other)
        assert len(spared) == 1, f"purging one queue left {len(spared)} of another's 1"

    @guarantee("deadletter.after_ack_copy", SHOULD, env=BROKER_ENV, requires=DL, rests_on=MOVED)
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
        dead = [(d.body, d.reason) for d in await broker.dead_letters(queue)]
        assert dead == [(b"pre-acked", "failed after its pre-ack")], (
            f"expected a copy of the acked message among the dead letters; listed {dead}"
        )
