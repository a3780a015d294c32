"""Fixtures for tests against the real PostgreSQL at ``CHICORY_TEST_POSTGRES_URL``.

The server (127.0.0.1:5432 unless that variable says otherwise) gets a database of its own
for this test session, created at the start and dropped at the end; every broker and result
backend of the tests works in it. A server that is not running fails the tests: it is not a
skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from chicory import Chicory
from chicory_postgres.broker import PostgresBroker
from chicory_postgres.results import PostgresResultBackend

SERVER_URL = os.environ.get(
    "CHICORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

BrokerFactory = Callable[..., Awaitable[PostgresBroker]]
BackendFactory = Callable[..., Awaitable[PostgresResultBackend]]


def database_url(name: str) -> str:
    """The server URL with the database ``name``."""
    parts = urlsplit(SERVER_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def create_database(name: str) -> None:
    """Create the database ``name`` on the test server.

    Its commits do not wait for the WAL to reach the disk (``synchronous_commit = off``): a
    test database need not survive a power cut, and on a machine whose disk is busy with
    other work an fsync per statement makes the suite several times slower. Crash safety
    is unchanged (a crash loses at most the last few hundred milliseconds of commits).
    """
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name))
        )


def drop_database(name: str) -> None:
    """Drop the database ``name``, disconnecting whoever is still in it."""
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this session's own on the test server, dropped afterwards."""
    name = f"chicory_test_{uuid.uuid4().hex[:12]}"
    create_database(name)
    try:
        yield database_url(name)
    finally:
        drop_database(name)


@pytest.fixture
async def make_broker(postgres_url: str) -> AsyncIterator[BrokerFactory]:
    """Open connected brokers on the session's database; all are closed after the test."""
    opened: list[PostgresBroker] = []

    async def make(**options: Any) -> PostgresBroker:
        broker = PostgresBroker.from_url(postgres_url, **options)
        await broker.connect()
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        await broker.close()


@pytest.fixture
async def make_backend(postgres_url: str) -> AsyncIterator[BackendFactory]:
    """Open connected result backends on the session's database; closed after the test."""
    opened: list[PostgresResultBackend] = []

    async def make(**options: Any) -> PostgresResultBackend:
        backend = PostgresResultBackend.from_url(postgres_url, **options)
        await backend.connect()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
async def app(postgres_url: str) -> AsyncIterator[Chicory]:
    """An app on the session's database (no other plugins loaded) with a queue of its own."""
    app = Chicory(
        broker=PostgresBroker.from_url(postgres_url),
        backend=PostgresResultBackend.from_url(postgres_url),
        load_entry_points=False,
        default_queue=f"q-{uuid.uuid4().hex[:8]}",
    )
    yield app
    await app.close()
