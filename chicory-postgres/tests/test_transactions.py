"""Enqueue inside the caller's transaction: a task exists if and only if it commits.

Each test runs a real worker on the PostgreSQL broker and result backend and a psycopg
connection of the test's own, as an application would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import psycopg
import pytest

from chicory import Chicory
from chicory.errors import BrokerError, CapabilityError
from chicory.middleware import Middleware, OutgoingTask
from chicory.worker import Worker
from chicory_postgres.broker import PostgresBroker
from chicory_postgres.results import PostgresResultBackend


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[psycopg.AsyncConnection[object]]:
    """The application's own connection, with an ``orders`` table."""
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY)")
        await conn.commit()
        yield conn


async def _serve_until(worker: Worker, done: anyio.Event, seconds: float) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        with anyio.move_on_after(seconds):
            await done.wait()
        worker.stop()


async def test_rolled_back_task_never_runs(
    app: Chicory, conn: psycopg.AsyncConnection[object]
) -> None:
    """A task enqueued in a transaction that rolls back is never delivered; one enqueued in
    a transaction that commits runs exactly once."""
    runs: list[str] = []
    done = anyio.Event()

    @app.task(name="tx.receipt")
    async def receipt(order_id: str) -> None:
        runs.append(order_id)
        if order_id == "committed":
            done.set()

    async def place_declined_order() -> None:
        async with conn.transaction():
            await conn.execute("INSERT INTO orders (id) VALUES ('rolled-back')")
            async with app.transaction(conn):
                await receipt.delay("rolled-back")
            raise RuntimeError("payment declined")

    with pytest.raises(RuntimeError, match="payment declined"):
        await place_declined_order()
    async with conn.transaction():
        await conn.execute("INSERT INTO orders (id) VALUES ('committed')")
        async with app.transaction(conn):
            result = await receipt.delay("committed")
    await _serve_until(Worker(app, concurrency=2, heartbeat_interval=0), done, 20)
    assert runs == ["committed"], f"expected only the committed task to run, ran {runs}"
    assert await result.get(timeout=5) is None
    broker = await app.connected_broker()
    counts = await broker.counts(app.default_queue)
    assert (counts.ready, counts.delayed, counts.in_flight) == (0, 0, 0)


async def test_not_visible_before_commit(
    app: Chicory, conn: psycopg.AsyncConnection[object]
) -> None:
    """Until the caller commits, workers cannot see the task (nor does it count)."""

    @app.task(name="tx.noop")
    async def noop() -> None:
        return None

    broker = await app.connected_broker()
    async with conn.transaction():
        async with app.transaction(conn):
            await noop.delay_many([(), ()])
        assert (await broker.counts(app.default_queue)).ready == 0, "seen before the commit"
    assert (await broker.counts(app.default_queue)).ready == 2, "gone after the commit"


async def test_refused_on_brokers_that_cannot(conn: psycopg.AsyncConnection[object]) -> None:
    """A broker without the capability refuses the block instead of publishing outside it."""
    app = Chicory(broker="memory://", backend="memory://")
    try:
        with pytest.raises(CapabilityError, match="transactional_enqueue"):
            async with app.transaction(conn):
                pass
    finally:
        await app.close()


async def test_unique_enqueue_joins_the_transaction(
    app: Chicory, conn: psycopg.AsyncConnection[object]
) -> None:
    """A unique enqueue inside the block claims its key in the caller's transaction: a
    rollback frees the key with the message, a commit keeps both."""

    @app.task(name="tx.unique")
    async def once() -> None:
        return None

    broker = await app.connected_broker()
    claims = []

    async def claim_and_roll_back() -> None:
        async with conn.transaction(), app.transaction(conn):
            claims.append(await once.apply_async(unique_key="nightly"))
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        await claim_and_roll_back()
    assert not claims[0].duplicate
    assert await broker.unique_holder(app.default_queue, "nightly") is None, "key kept"
    async with conn.transaction(), app.transaction(conn):
        second = await once.apply_async(unique_key="nightly")
        again = await once.apply_async(unique_key="nightly")
    assert not second.duplicate
    assert again.duplicate, "the key was claimed twice in one transaction"
    assert again.id == second.id, (again.id, second.id)
    assert await broker.unique_holder(app.default_queue, "nightly") == second.id
    assert (await broker.counts(app.default_queue)).ready == 1, "one message for one key"


async def test_unique_refused_where_the_broker_cannot_claim_in_a_transaction(
    postgres_url: str, conn: psycopg.AsyncConnection[object]
) -> None:
    """On a transactional broker without ``publish_unique_within``, a unique enqueue inside
    the block is refused (its key would outlive a rollback), and nothing is enqueued."""

    class NoUniqueWithin(PostgresBroker):
        publish_unique_within = None  # not a TransactionalUniquePublisher

    app = Chicory(
        broker=NoUniqueWithin.from_url(postgres_url),
        backend=PostgresResultBackend.from_url(postgres_url),
        load_entry_points=False,
        default_queue=f"tx-{uuid.uuid4().hex[:8]}",
    )

    @app.task(name="tx.unique_refused")
    async def once() -> None:
        return None

    try:
        async with conn.transaction(), app.transaction(conn):
            with pytest.raises(CapabilityError, match="cannot join a database transaction"):
                await once.apply_async(unique_key="nightly")
        broker = await app.connected_broker()
        assert (await broker.counts(app.default_queue)).ready == 0
        assert await broker.unique_holder(app.default_queue, "nightly") is None
    finally:
        await app.close()


async def test_autocommit_is_refused(app: Chicory, postgres_url: str) -> None:
    """A psycopg connection in autocommit mode outside a transaction would commit the task
    at once: the enqueue is refused, saying so, and nothing is enqueued."""

    @app.task(name="tx.autocommit")
    async def bare() -> None:
        return None

    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        async with app.transaction(conn):
            with pytest.raises(BrokerError, match="no open transaction"):
                await bare.delay()
        async with conn.transaction(), app.transaction(conn):
            await bare.delay()  # an explicit transaction on it is fine
    assert (await (await app.connected_broker()).counts(app.default_queue)).ready == 1


async def test_other_connections_are_refused(app: Chicory) -> None:
    """Something that is not a connection the broker can write on is a clear error."""

    @app.task(name="tx.other")
    async def other() -> None:
        return None

    with pytest.raises(CapabilityError, match="psycopg"):
        async with app.transaction(object()):
            await other.delay()


async def test_publish_middleware_runs(app: Chicory, conn: psycopg.AsyncConnection[object]) -> None:
    """Tasks enqueued in a transaction go through the app's publish middleware."""

    class Tenant(Middleware):
        def before_publish(self, message: OutgoingTask) -> None:
            message.headers["x-tenant"] = "acme"

    app.add_middleware(Tenant())

    @app.task(name="tx.tenant")
    async def tenant() -> None:
        return None

    async with conn.transaction(), app.transaction(conn):
        await tenant.delay()
    broker = await app.connected_broker()
    async with broker.consume([app.default_queue], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=5)
        assert delivery.headers.get("x-tenant") == "acme", dict(delivery.headers)
        await delivery.ack()


async def test_a_sqlalchemy_session_s_transaction(app: Chicory, postgres_url: str) -> None:
    """An ``AsyncSession`` (``postgresql+psycopg://``) carries the task in its transaction:
    gone with a rollback, there once after the commit, next to the session's own rows."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    @app.task(name="tx.session")
    async def shipped(order_id: str) -> None:
        return None

    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    broker = await app.connected_broker()
    try:
        async with AsyncSession(engine) as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS shipments (id text)"))
            await session.commit()
            async with app.transaction(session):
                await shipped.delay("o-1")
            await session.execute(text("INSERT INTO shipments VALUES ('o-1')"))
            assert (await broker.counts(app.default_queue)).ready == 0, "seen before commit"
            await session.rollback()
            assert (await broker.counts(app.default_queue)).ready == 0, "kept after rollback"
            async with app.transaction(session):
                await shipped.delay("o-2")
            await session.execute(text("INSERT INTO shipments VALUES ('o-2')"))
            await session.commit()
            rows = (await session.execute(text("SELECT id FROM shipments"))).scalars().all()
    finally:
        await engine.dispose()
    assert rows == ["o-2"]
    assert (await broker.counts(app.default_queue)).ready == 1, "one task after the commit"
