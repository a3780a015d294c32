"""Transactional enqueue: the ``transactional_enqueue`` capability (:mod:`chicory.transactions`).

What ``async with app.transaction(conn):`` promises an application: a task published in its
transaction exists if and only if that transaction commits. The suite holds transactions of
its own through the harness's :class:`~chicory.testing.transaction_hooks.TransactionFactory`
(``BrokerHarness.transactions``), publishes into them with ``publish_within`` (and
``publish_unique_within``), and watches from the outside with an ordinary consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

import anyio

from chicory.broker import Broker, Consumer, Delivery, OutgoingMessage
from chicory.clock import utcnow
from chicory.errors import CapabilityError
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import (
    QUIET,
    describe,
    expect_counts,
    fetch_exactly,
    fetch_none,
    fetch_none_before,
    in_seconds,
)
from chicory.testing.transaction_hooks import NO_TRANSACTIONS, OpenTransaction
from chicory.testing.worker_rig import open_app, running, start_worker
from chicory.transactions import TransactionalPublisher, TransactionalUniquePublisher
from chicory.unique import UniqueEnqueue

__all__ = ["TransactionalEnqueueSuite"]

MUST = Level.MUST
TXN = ("transactional_enqueue",)
NEEDS = ("transactions",)
WORKS = ("broker.round_trip", "settle.ack_removes")
HOUR = 3600.0


async def _publisher(env: BrokerEnv) -> tuple[TransactionalPublisher, Broker]:
    """The broker of the test, as both faces."""
    broker = await env.broker()
    assert isinstance(broker, TransactionalPublisher), (
        f"{broker!r} declares the 'transactional_enqueue' capability but lacks publish_within"
    )
    return broker, broker


def _transaction(env: BrokerEnv, broker: Broker) -> AbstractAsyncContextManager[OpenTransaction]:
    """A transaction on the broker's database, opened by the harness's factory."""
    factory = env.harness.transactions
    assert factory is not None, NO_TRANSACTIONS  # checked before the test (needs)
    return factory(broker)


def _message(body: bytes, *, not_before: datetime | None = None) -> OutgoingMessage:
    return OutgoingMessage(body=body, headers={"h": body.decode()}, not_before=not_before)


def _bodies(deliveries: Sequence[Delivery]) -> list[bytes]:
    return sorted(d.body for d in deliveries)


async def _only(consumer: Consumer, env: BrokerEnv, expected: list[bytes], what: str) -> None:
    """Receive exactly ``expected`` (any order), ack it, and then nothing more."""
    got = await fetch_exactly(consumer, len(expected), within=env.harness.patience, what=what)
    got = [*got, *await consumer.fetch(100, timeout=QUIET)]
    assert _bodies(got) == sorted(expected), (
        f"{what}: expected exactly {sorted(expected)}; the broker delivered {describe(got)}"
    )
    for delivery in got:
        await delivery.ack()


class TransactionalEnqueueSuite:
    """Subclass with an empty body (``class TestTransactions(TransactionalEnqueueSuite):
    pass``); the harness needs ``transactions`` (see :mod:`chicory.testing.transaction_hooks`)."""

    @guarantee(
        "txn.rollback_discards", MUST, env=BROKER_ENV, requires=TXN, needs=NEEDS, rests_on=WORKS
    )
    async def test_rollback_discards(self, env: BrokerEnv) -> None:
        """MUST never deliver a message published in a transaction that rolls back."""
        publisher, broker = await _publisher(env)
        queue = env.queue()
        async with broker.consume([queue], prefetch=10) as consumer:
            async with _transaction(env, broker) as tx:
                await publisher.publish_within(tx.connection, queue, [_message(b"gone")])
                await tx.rollback()
            await fetch_none(consumer, wait=QUIET * 2, what="of a rolled-back transaction")
            await expect_counts(broker, queue, what="after a rollback", ready=0, delayed=0)
            await broker.publish(queue, b"after")
            await _only(consumer, env, [b"after"], "after a rollback and one plain publish")

    @guarantee(
        "txn.commit_delivers_once", MUST, env=BROKER_ENV, requires=TXN, needs=NEEDS, rests_on=WORKS
    )
    async def test_commit_delivers_once(self, env: BrokerEnv) -> None:
        """MUST deliver a message published in a transaction that commits exactly once, with
        its body, headers and the message id publish_within returned."""
        publisher, broker = await _publisher(env)
        queue = env.queue()
        async with _transaction(env, broker) as tx:
            ids = await publisher.publish_within(tx.connection, queue, [_message(b"kept")])
            await tx.commit()
        assert len(ids) == 1, f"publish_within of one message returned {ids!r}"
        async with broker.consume([queue], prefetch=10) as consumer:
            (delivery,) = await fetch_exactly(
                consumer, 1, within=env.harness.patience, what="after the commit"
            )
            assert delivery.body == b"kept", delivery.body
            assert dict(delivery.headers) == {"h": "kept"}, dict(delivery.headers)
            assert delivery.message_id == ids[0], (delivery.message_id, ids[0])
            await delivery.ack()
            await fetch_none(consumer, what="after the committed message was acked")
        await expect_counts(broker, queue, what="after the ack", ready=0, in_flight=0, delayed=0)

    @guarantee(
        "txn.invisible_until_commit",
        MUST,
        env=BROKER_ENV,
        requires=TXN,
        needs=NEEDS,
        rests_on=WORKS,
    )
    async def test_invisible_until_commit(self, env: BrokerEnv) -> None:
        """MUST deliver nothing of an open transaction (a consumer polling meanwhile sees
        nothing and counts show nothing), and deliver it once the transaction commits."""
        publisher, broker = await _publisher(env)
        queue = env.queue()
        async with broker.consume([queue], prefetch=10) as consumer:
            async with _transaction(env, broker) as tx:
                await publisher.publish_within(tx.connection, queue, [_message(b"pending")])
                await fetch_none(consumer, wait=QUIET * 2, what="while its transaction is open")
                await expect_counts(
                    broker, queue, what="while the transaction is open", ready=0, delayed=0
                )
                await tx.commit()
            await _only(consumer, env, [b"pending"], "once its transaction committed")

    @guarantee(
        "txn.batch_all_or_nothing",
        MUST,
        env=BROKER_ENV,
        requires=TXN,
        needs=NEEDS,
        rests_on=WORKS,
    )
    async def test_batch_all_or_nothing(self, env: BrokerEnv) -> None:
        """MUST deliver every message of a transaction's batches if it commits and none if it
        rolls back; a refused batch (a naive not_before) writes none of its messages and
        leaves the transaction usable."""
        publisher, broker = await _publisher(env)
        queue = env.queue()
        async with _transaction(env, broker) as tx:
            await publisher.publish_within(tx.connection, queue, [_message(b"r1"), _message(b"r2")])
            await publisher.publish_within(tx.connection, queue, [_message(b"r3")])
            await tx.rollback()
        naive = utcnow().replace(tzinfo=None)
        async with _transaction(env, broker) as tx:
            ids = await publisher.publish_within(
                tx.connection, queue, [_message(b"c1"), _message(b"c2"), _message(b"c3")]
            )
            assert len(set(ids)) == 3, f"publish_within of 3 messages returned {ids!r}"
            refused = [_message(b"x1"), _message(b"x2", not_before=naive)]
            try:
                await publisher.publish_within(tx.connection, queue, refused)
            except ValueError:
                pass
            else:
                raise AssertionError("publish_within took a naive not_before (ValueError due)")
            await publisher.publish_within(tx.connection, queue, [_message(b"c4")])
            await tx.commit()
        async with broker.consume([queue], prefetch=10) as consumer:
            await _only(consumer, env, [b"c1", b"c2", b"c3", b"c4"], "of the committed batches")

    @guarantee(
        "txn.delayed",
        MUST,
        env=BROKER_ENV,
        requires=(*TXN, "delayed_delivery"),
        needs=NEEDS,
        rests_on=(*WORKS, "delivery.delayed_not_before"),
    )
    async def test_delayed(self, env: BrokerEnv) -> None:
        """MUST treat delayed messages of a transaction alike: none if it rolls back, not
        counted while it is open, and once it commits, delayed until due, then delivered once."""
        publisher, broker = await _publisher(env)
        queue = env.queue()
        async with _transaction(env, broker) as tx:
            await publisher.publish_within(
                tx.connection, queue, [_message(b"gone", not_before=in_seconds(0.5))]
            )
            await tx.rollback()
        due = in_seconds(1.5)
        async with _transaction(env, broker) as tx:
            await publisher.publish_within(
                tx.connection, queue, [_message(b"kept", not_before=due)]
            )
            await expect_counts(broker, queue, what="while its transaction is open", delayed=0)
            await tx.commit()
        async with broker.consume([queue], prefetch=10) as consumer:
            await fetch_none_before(consumer, due, what="before the committed message was due")
            await _only(consumer, env, [b"kept"], "once the committed delayed message was due")

    @guarantee(
        "txn.unique_rollback_frees_key",
        MUST,
        env=BROKER_ENV,
        requires=(*TXN, "unique_enqueue"),
        needs=NEEDS,
        rests_on=(*WORKS, "unique.once_per_key"),
    )
    async def test_unique_rollback_frees_key(self, env: BrokerEnv) -> None:
        """MUST free a unique key claimed in a transaction that rolls back, and keep one
        claimed in a transaction that commits (publish_unique_within)."""
        broker = await env.broker()
        assert isinstance(broker, UniqueEnqueue), f"{broker!r} lacks publish_unique"
        assert isinstance(broker, TransactionalUniquePublisher), (
            f"{broker!r} declares 'transactional_enqueue' and 'unique_enqueue' but lacks "
            "publish_unique_within"
        )
        queue = env.queue()
        async with _transaction(env, broker) as tx:
            claim = await broker.publish_unique_within(
                tx.connection, queue, _message(b"a"), key="k", holder="a", hold=HOUR
            )
            assert claim.published, f"a free key was not claimed in the transaction: {claim}"
            await tx.rollback()
        assert await broker.unique_holder(queue, "k") is None, "a rolled-back claim holds the key"
        again = await broker.publish_unique(queue, _message(b"b"), key="k", holder="b", hold=HOUR)
        assert again.published, f"the key of a rolled-back claim stayed taken: {again}"
        async with _transaction(env, broker) as tx:
            kept = await broker.publish_unique_within(
                tx.connection, queue, _message(b"c"), key="k2", holder="c", hold=HOUR
            )
            await tx.commit()
        assert kept.published, kept
        assert await broker.unique_holder(queue, "k2") == "c", "a committed claim is not held"
        late = await broker.publish_unique(queue, _message(b"d"), key="k2", holder="d", hold=HOUR)
        assert not late.published, f"a key claimed by a committed transaction was free: {late}"
        async with broker.consume([queue], prefetch=10) as consumer:
            await _only(consumer, env, [b"b", b"c"], "of the unique publishes")

    @guarantee("txn.foreign_connection_refused", MUST, env=BROKER_ENV, requires=TXN)
    async def test_foreign_connection_refused(self, env: BrokerEnv) -> None:
        """MUST refuse, with CapabilityError, a connection it cannot write on, and publish
        nothing (never outside the transaction it was asked to join)."""
        publisher, broker = await _publisher(env)
        queue = env.queue()
        try:
            await publisher.publish_within(object(), queue, [_message(b"x")])
        except CapabilityError:
            pass
        else:
            raise AssertionError("publish_within(object(), ...) did not raise CapabilityError")
        await expect_counts(broker, queue, what="after a refused connection", ready=0, delayed=0)

    @guarantee(
        "txn.worker_runs_committed",
        MUST,
        env=BROKER_ENV,
        requires=TXN,
        needs=(*NEEDS, "result_backend"),
        rests_on=(*WORKS, "txn.rollback_discards", "txn.commit_delivers_once"),
    )
    async def test_worker_runs_committed(self, env: BrokerEnv) -> None:
        """MUST, through app.transaction and a worker, never run the tasks of a rolled-back
        transaction (delay and delay_many) and run those of a committed one once each."""
        app = await open_app(env)
        runs: list[str] = []
        all_ran = anyio.Event()

        @app.task(name="conformance.txn.record")
        async def record(label: str) -> str:
            runs.append(label)
            if len(runs) >= 3:
                all_ran.set()
            return label

        broker = await app.connected_broker()
        async with _transaction(env, broker) as tx:
            async with app.transaction(tx.connection):
                await record.delay("rolled-back")
                await record.delay_many([("rolled-back-batch",), ("rolled-back-batch",)])
            await tx.rollback()
        async with _transaction(env, broker) as tx:
            async with app.transaction(tx.connection):
                one = await record.delay("committed")
                batch = await record.delay_many([("batch-1",), ("batch-2",)])
            await tx.commit()
        async with running(start_worker(app)):
            with anyio.move_on_after(env.harness.patience):
                await all_ran.wait()
            for result in (one, *batch):
                await result.get(timeout=env.harness.patience)
            await anyio.sleep(QUIET)
        assert sorted(runs) == ["batch-1", "batch-2", "committed"], (
            f"expected the 3 committed tasks to run once each; they ran {sorted(runs)}"
        )
