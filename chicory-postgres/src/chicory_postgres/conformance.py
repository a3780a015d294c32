"""Transactions for the conformance suite's ``TransactionalEnqueueSuite``.

``BrokerHarness(transactions=psycopg_transaction)`` (what ``chicory conformance
postgresql://...`` uses) or ``asyncpg_transaction`` opens a connection of its own to the
broker's database and begins a transaction on it, as an application would before
``app.transaction(conn)`` (see :mod:`chicory.testing.transaction_hooks`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import psycopg

from chicory.broker import Broker
from chicory_postgres.broker import PostgresBroker

__all__ = ["DriverTransaction", "asyncpg_transaction", "psycopg_transaction"]


@attrs.define
class DriverTransaction:
    """An open transaction on a connection of the test's own.

    Attributes:
        connection: The driver connection the transaction is open on.
        ended: Whether ``commit()`` or ``rollback()`` was called.
    """

    connection: Any
    _commit: Any
    _rollback: Any
    ended: bool = False

    async def commit(self) -> None:
        """Commit the transaction."""
        self.ended = True
        await self._commit()

    async def rollback(self) -> None:
        """Roll the transaction back."""
        self.ended = True
        await self._rollback()


def _conninfo(broker: Broker) -> str:
    if not isinstance(broker, PostgresBroker):
        raise TypeError(f"expected a PostgresBroker, got {broker!r}")
    return broker.settings.conninfo


@asynccontextmanager
async def psycopg_transaction(broker: Broker) -> AsyncIterator[DriverTransaction]:
    """A psycopg ``AsyncConnection`` to ``broker``'s database, in a transaction."""
    conn = await psycopg.AsyncConnection.connect(_conninfo(broker))
    try:  # not in autocommit mode: its first statement begins the transaction
        yield DriverTransaction(conn, conn.commit, conn.rollback)
    finally:
        await conn.rollback()  # a no-op once committed or rolled back
        await conn.close()


@asynccontextmanager
async def asyncpg_transaction(broker: Broker) -> AsyncIterator[DriverTransaction]:
    """An asyncpg connection to ``broker``'s database, in a transaction (needs the
    ``asyncpg`` extra)."""
    asyncpg: Any = importlib.import_module("asyncpg")
    conn = await asyncpg.connect(_conninfo(broker))
    try:
        transaction = conn.transaction()
        await transaction.start()
        opened = DriverTransaction(conn, transaction.commit, transaction.rollback)
        try:
            yield opened
        finally:
            if not opened.ended:
                await transaction.rollback()
    finally:
        await conn.close()
