"""Unique enqueue: the ``unique_enqueue`` capability (:mod:`chicory.unique`).

What ``apply_async(..., unique=True)`` and the scheduler's "each fire once, whatever the
number of schedulers" rely on: a key is claimed once, atomically with the publish; its claim
outlives the message's delivery and ack, ends when its holder releases it (not sooner than
its keep time) or when its hold runs out, and belongs to one queue.
"""

from __future__ import annotations

import anyio

from chicory.broker import Broker, OutgoingMessage, delete_queue
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import expect_counts, fetch_exactly, in_seconds
from chicory.unique import UniqueClaim, UniqueEnqueue

__all__ = ["UniqueSuite"]

MUST = Level.MUST
UNIQUE = ("unique_enqueue",)
HOUR = 3600.0


async def _unique(env: BrokerEnv) -> tuple[UniqueEnqueue, Broker]:
    """The broker of the test, as both faces."""
    broker = await env.broker()
    assert isinstance(broker, UniqueEnqueue), (
        f"{broker!r} declares the 'unique_enqueue' capability but lacks one of its methods "
        "(publish_unique, release_unique, unique_holder)"
    )
    return broker, broker


def _message(body: bytes) -> OutgoingMessage:
    return OutgoingMessage(body=body, headers={"h": body.decode()})


class UniqueSuite:
    """Subclass with an empty body (``class TestUnique(UniqueSuite): pass``)."""

    @guarantee("unique.once_per_key", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_once_per_key(self, env: BrokerEnv) -> None:
        """MUST publish a key's first message only, and name its holder to later callers."""
        unique, broker = await _unique(env)
        queue = env.queue()
        first = await unique.publish_unique(
            queue, _message(b"first"), key="k", holder="a", hold=HOUR
        )
        assert first.published, f"a free key was not claimed: {first}"
        assert first.holder == "a", f"the claim names holder {first.holder!r}, not 'a'"
        second = await unique.publish_unique(
            queue, _message(b"second"), key="k", holder="b", hold=HOUR
        )
        assert second == UniqueClaim(message_id=None, holder="a"), (
            f"a held key must publish nothing and name its holder 'a'; got {second}"
        )
        other = await unique.publish_unique(
            queue, _message(b"other"), key="k2", holder="c", hold=HOUR
        )
        assert other.published, "another key is free"
        assert await unique.unique_holder(queue, "k") == "a"
        assert await unique.unique_holder(queue, "unknown") is None
        await expect_counts(broker, queue, what="after 3 publishes of 2 keys", ready=2)
        async with broker.consume([queue], prefetch=5) as consumer:
            got = await fetch_exactly(consumer, 2)
            assert sorted(d.body for d in got) == [b"first", b"other"], [d.body for d in got]
            first_delivery = next(d for d in got if d.body == b"first")
            assert first_delivery.message_id == first.message_id
            assert dict(first_delivery.headers) == {"h": "first"}
            for delivery in got:
                await delivery.ack()

    @guarantee("unique.atomic", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_atomic(self, env: BrokerEnv) -> None:
        """MUST claim a key once among concurrent publishers (the check, the claim and the
        publish are one step)."""
        unique, broker = await _unique(env)
        queue = env.queue()
        claims: list[UniqueClaim] = []

        async def publish(n: int) -> None:
            claim = await unique.publish_unique(
                queue, _message(f"m{n}".encode()), key="race", holder=f"h{n}", hold=HOUR
            )
            claims.append(claim)

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(publish, n)
        won = [c for c in claims if c.published]
        assert len(won) == 1, f"20 concurrent publishers of one key: {len(won)} published"
        assert {c.holder for c in claims} == {won[0].holder}, claims
        await expect_counts(broker, queue, what="after 20 racing publishes", ready=1)

    @guarantee("unique.held_through_delivery", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_held_through_delivery(self, env: BrokerEnv) -> None:
        """MUST keep a key held while its message is delayed, delivered and after its ack:
        only a release or the end of its hold frees it."""
        unique, broker = await _unique(env)
        queue = env.queue()
        later = OutgoingMessage(body=b"later", not_before=in_seconds(HOUR))
        claim = await unique.publish_unique(queue, later, key="d", holder="a", hold=2 * HOUR)
        assert claim.published
        await expect_counts(broker, queue, what="after a delayed unique publish", delayed=1)
        again = await unique.publish_unique(queue, later, key="d", holder="b", hold=2 * HOUR)
        assert not again.published, "a key held by a delayed message was claimed again"
        await unique.publish_unique(queue, _message(b"now"), key="n", holder="a", hold=HOUR)
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            await delivery.ack()
        assert await unique.unique_holder(queue, "n") == "a", "an ack freed the key"
        claim = await unique.publish_unique(queue, _message(b"x"), key="n", holder="b", hold=HOUR)
        assert not claim.published, "a key was claimed again after its message was acked"

    @guarantee("unique.release", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_release(self, env: BrokerEnv) -> None:
        """MUST free a key when its holder releases it, and only then: another holder's
        release does nothing and returns False."""
        unique, _ = await _unique(env)
        queue = env.queue()
        await unique.publish_unique(queue, _message(b"1"), key="r", holder="a", hold=HOUR)
        assert await unique.release_unique(queue, "r", "b") is False, "released by a stranger"
        assert await unique.unique_holder(queue, "r") == "a", "a stranger's release freed it"
        assert await unique.release_unique(queue, "r", "a") is True
        assert await unique.unique_holder(queue, "r") is None
        assert await unique.release_unique(queue, "r", "a") is False, "released twice"
        claim = await unique.publish_unique(queue, _message(b"2"), key="r", holder="b", hold=HOUR)
        assert claim.published, f"a released key stayed held: {claim}"
        assert claim.holder == "b", f"the new claim names {claim.holder!r}, not 'b'"

    @guarantee("unique.hold_expires", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_hold_expires(self, env: BrokerEnv) -> None:
        """MUST free a key whose hold ran out, unreleased."""
        unique, _ = await _unique(env)
        queue = env.queue()
        hold = 0.3
        await unique.publish_unique(queue, _message(b"1"), key="e", holder="a", hold=hold)
        assert await unique.unique_holder(queue, "e") == "a"
        await anyio.sleep(hold + env.harness.clock_tolerance + 0.1)
        assert await unique.unique_holder(queue, "e") is None, "the hold ran out; still held"
        claim = await unique.publish_unique(queue, _message(b"2"), key="e", holder="b", hold=HOUR)
        assert claim.published, f"a key whose hold ran out was not claimed: {claim}"

    @guarantee("unique.keep_outlives_release", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_keep_outlives_release(self, env: BrokerEnv) -> None:
        """MUST keep a released key held until its keep time ends, then free it."""
        unique, _ = await _unique(env)
        queue = env.queue()
        keep = 0.5
        await unique.publish_unique(
            queue, _message(b"1"), key="kp", holder="a", hold=HOUR, keep=keep
        )
        assert await unique.release_unique(queue, "kp", "a") is True
        early = await unique.publish_unique(queue, _message(b"2"), key="kp", holder="b", hold=HOUR)
        assert not early.published, "released within its keep time, the key was claimed again"
        await anyio.sleep(keep + env.harness.clock_tolerance + 0.1)
        late = await unique.publish_unique(queue, _message(b"3"), key="kp", holder="c", hold=HOUR)
        assert late.published, f"the keep time ended; the key stayed held: {late}"

    @guarantee("unique.per_queue", MUST, env=BROKER_ENV, requires=UNIQUE)
    async def test_per_queue(self, env: BrokerEnv) -> None:
        """MUST keep the keys of different queues apart."""
        unique, _ = await _unique(env)
        one, two = env.queue("one"), env.queue("two")
        await unique.publish_unique(one, _message(b"1"), key="same", holder="a", hold=HOUR)
        claim = await unique.publish_unique(two, _message(b"2"), key="same", holder="b", hold=HOUR)
        assert claim.published, "a key held in one queue blocked another queue"
        assert await unique.release_unique(two, "same", "a") is False
        assert await unique.unique_holder(one, "same") == "a"

    @guarantee(
        "unique.deleted_with_queue", MUST, env=BROKER_ENV, requires=(*UNIQUE, "delete_queue")
    )
    async def test_deleted_with_queue(self, env: BrokerEnv) -> None:
        """MUST free a queue's keys when delete_queue deletes the queue."""
        unique, broker = await _unique(env)
        queue = env.queue()
        await unique.publish_unique(queue, _message(b"1"), key="d", holder="a", hold=HOUR)
        await delete_queue(broker, queue)
        assert await unique.unique_holder(queue, "d") is None, "delete_queue left the key held"
        claim = await unique.publish_unique(queue, _message(b"2"), key="d", holder="b", hold=HOUR)
        assert claim.published, f"a deleted queue's key stayed held: {claim}"
