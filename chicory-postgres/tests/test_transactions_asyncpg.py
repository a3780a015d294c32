"""Enqueue inside an asyncpg connection's transaction (``chicory-postgres[asyncpg]``).

A real worker runs on the PostgreSQL broker and result backend; the application's side is an
asyncpg connection (opened alone, or acquired from an ``asyncpg.Pool``), as an application on
asyncpg would hold it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import asyncpg
import pytest

from chicory import Chicory
from chicory.errors import BrokerError, CapabilityError
from chicory.worker import Worker

Opener = Callable[[str], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def _plain(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def _from_pool(url: str) -> AsyncIterator[Any]:
    async with asyncpg.create_pool(url, min_size=1, max_size=2) as pool, pool.acquire() as conn:
        yield conn


@pytest.fixture(params=[_plain, _from_pool], ids=["connection", "pool"])
def open_conn(request: pytest.FixtureRequest) -> Opener:
    """How the application holds its asyncpg connection."""
    opener: Opener = request.param
    return opener


async def _serve_until(app: Chicory, done: anyio.Event) -> None:
    """Run a worker until ``done`` is set (60 s at most), then drain it."""
    worker = Worker(app, concurrency=2, heartbeat_interval=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        with anyio.move_on_after(60):
            await done.wait()
        worker.stop()


async def test_rollback_never_runs_commit_runs_once(
    app: Chicory, postgres_url: str, open_conn: Opener
) -> None:
    """A task enqueued in a rolled-back asyncpg transaction never runs; one enqueued in a
    committed one runs exactly once, next to the rows its transaction wrote."""
    runs: list[str] = []
    done = anyio.Event()

    @app.task(name="txa.receipt")
    async def receipt(order_id: str) -> None:
        runs.append(order_id)
        done.set()

    table = f"orders_{uuid.uuid4().hex[:8]}"
    async with open_conn(postgres_url) as conn:
        await conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY)")

        async def place_declined_order() -> None:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES ($1)", "rolled-back")
                async with app.transaction(conn):
                    await receipt.delay("rolled-back")
                raise RuntimeError("payment declined")

        with pytest.raises(RuntimeError, match="declined"):
            await place_declined_order()
        async with conn.transaction():
            await conn.execute(f"INSERT INTO {table} VALUES ($1)", "committed")
            async with app.transaction(conn):
                result = await receipt.delay("committed")
        rows = await conn.fetch(f"SELECT id FROM {table}")
        await conn.execute(f"DROP TABLE {table}")
    assert [row["id"] for row in rows] == ["committed"]
    await _serve_until(app, done)
    assert await result.get(timeout=10) is None
    assert runs == ["committed"], f"expected only the committed task to run, ran {runs}"
    counts = await (await app.connected_broker()).counts(app.default_queue)
    assert (counts.ready, counts.delayed, counts.in_flight) == (0, 0, 0), counts


async def test_invisible_until_commit(app: Chicory, postgres_url: str, open_conn: Opener) -> None:
    """Until the asyncpg transaction commits, a batch (``delay_many``) is not there; after
    it, all of it is, delayed tasks counted as delayed."""

    @app.task(name="txa.noop")
    async def noop() -> None:
        return None

    broker = await app.connected_broker()
    async with open_conn(postgres_url) as conn, conn.transaction():
        async with app.transaction(conn):
            await noop.delay_many([(), (), ()])
            await noop.apply_async(countdown=3600)
        counts = await broker.counts(app.default_queue)
        assert (counts.ready, counts.delayed) == (0, 0), f"seen before the commit: {counts}"
    counts = await broker.counts(app.default_queue)
    assert (counts.ready, counts.delayed) == (3, 1), f"after the commit: {counts}"


async def test_unique_key_freed_by_rollback(
    app: Chicory, postgres_url: str, open_conn: Opener
) -> None:
    """A unique key claimed in a rolled-back asyncpg transaction is free again."""

    @app.task(name="txa.unique")
    async def once() -> None:
        return None

    broker = await app.connected_broker()
    async with open_conn(postgres_url) as conn:
        tx = conn.transaction()
        await tx.start()
        async with app.transaction(conn):
            claimed = await once.apply_async(unique_key="k")
        assert await broker.unique_holder(app.default_queue, "k") is None, "seen before commit"
        await tx.rollback()
    assert not claimed.duplicate
    assert await broker.unique_holder(app.default_queue, "k") is None, "kept after rollback"
    again = await once.apply_async(unique_key="k")
    assert not again.duplicate, "the key of a rolled-back transaction stayed taken"


async def test_a_sqlalchemy_session_on_asyncpg(app: Chicory, postgres_url: str) -> None:
    """An ``AsyncSession`` on the asyncpg driver (``postgresql+asyncpg://``) carries the task
    in its transaction: gone with a rollback, there once after the commit."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    @app.task(name="txa.session")
    async def shipped(order_id: str) -> None:
        return None

    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    broker = await app.connected_broker()
    try:
        async with AsyncSession(engine) as session:
            async with app.transaction(session):
                await shipped.delay("o-1")
            await session.rollback()
            assert (await broker.counts(app.default_queue)).ready == 0, "kept after rollback"
            async with app.transaction(session):
                await shipped.delay("o-2")
            assert (await broker.counts(app.default_queue)).ready == 0, "seen before commit"
            await session.commit()
    finally:
        await engine.dispose()
    assert (await broker.counts(app.default_queue)).ready == 1, "one task after the commit"


async def test_no_open_transaction_is_refused(
    app: Chicory, postgres_url: str, open_conn: Opener
) -> None:
    """An asyncpg connection outside ``conn.transaction()`` would commit the task at once:
    the enqueue is refused, saying so, and nothing is enqueued."""

    @app.task(name="txa.bare")
    async def bare() -> None:
        return None

    async with open_conn(postgres_url) as conn, app.transaction(conn):
        with pytest.raises(BrokerError, match="no open transaction"):
            await bare.delay()
    counts = await (await app.connected_broker()).counts(app.default_queue)
    assert counts.ready == 0, counts


async def test_an_unknown_connection_names_asyncpg(app: Chicory) -> None:
    """The refusal of an unknown connection kind names the asyncpg extra."""

    @app.task(name="txa.other")
    async def other() -> None:
        return None

    with pytest.raises(CapabilityError, match=r"chicory-postgres\[asyncpg\]"):
        async with app.transaction(object()):
            await other.delay()


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_a_sqlalchemy_connection_not_yet_begun(
    app: Chicory, postgres_url: str, driver: str
) -> None:
    """A SQLAlchemy ``AsyncConnection`` that sent nothing yet begins its transaction with the
    enqueue, as with any first statement (SQLAlchemy's autobegin): its rollback drops the
    task, its commit keeps it."""
    from sqlalchemy.ext.asyncio import create_async_engine

    @app.task(name="txa.autobegin")
    async def shipped(order_id: str) -> None:
        return None

    engine = create_async_engine(postgres_url.replace("postgresql://", f"postgresql+{driver}://"))
    broker = await app.connected_broker()
    try:
        async with engine.connect() as conn:
            async with app.transaction(conn):
                await shipped.delay("o-1")
            assert conn.in_transaction(), "the enqueue did not begin the connection's transaction"
            await conn.rollback()
            assert (await broker.counts(app.default_queue)).ready == 0, "kept after rollback"
            async with app.transaction(conn):
                await shipped.delay("o-2")
            assert (await broker.counts(app.default_queue)).ready == 0, "seen before commit"
            await conn.commit()
    finally:
        await engine.dispose()
    assert (await broker.counts(app.default_queue)).ready == 1, "one task after the commit"
