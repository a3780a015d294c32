"""How the conformance suite opens a transaction on the database of a transactional broker.

A broker declaring ``transactional_enqueue`` writes messages on the caller's connection,
inside the caller's transaction (:mod:`chicory.transactions`). To check that, the suite must
hold such a transaction itself, so the harness gives it a :class:`TransactionFactory`
(``BrokerHarness.transactions``)::

    @asynccontextmanager
    async def open_transaction(broker: Broker) -> AsyncIterator[OpenTransaction]:
        conn = await mydriver.connect(broker.settings.url)     # the broker's own database
        try:
            await conn.begin()
            yield MyTransaction(conn)       # .connection, .commit(), .rollback()
        finally:
            await conn.rollback_if_open()
            await conn.close()

    BrokerHarness(factory=..., transactions=open_transaction)

Each call opens a new connection of the test's own (never one of the broker's pool) and
begins a transaction on it; the test ends it with ``commit()`` or ``rollback()``, or leaves
it open and the block's exit rolls it back and closes the connection.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

from chicory.broker import Broker

__all__ = ["NO_TRANSACTIONS", "OpenTransaction", "TransactionFactory"]


class OpenTransaction(Protocol):
    """A transaction the suite publishes into, open on a connection of the test's own."""

    @property
    def connection(self) -> object:
        """What an application would pass to ``app.transaction(...)``: the object the
        broker's ``publish_within`` receives."""
        ...

    async def commit(self) -> None:
        """Commit the transaction (called at most once, and never after ``rollback``)."""
        ...

    async def rollback(self) -> None:
        """Roll the transaction back (called at most once, and never after ``commit``)."""
        ...


class TransactionFactory(Protocol):
    """Opens a connection to the database of ``broker`` and begins a transaction on it."""

    def __call__(self, broker: Broker) -> AbstractAsyncContextManager[OpenTransaction]:
        """Return a context manager holding the open transaction.

        Args:
            broker: The broker under test, connected; the transaction must be on the
                database it keeps its queues in.

        Entering opens a new connection and begins a transaction; exiting rolls back
        whatever was neither committed nor rolled back, and closes the connection.
        """
        ...


NO_TRANSACTIONS: Final = (
    "the broker declares the 'transactional_enqueue' capability, so its harness must give "
    "BrokerHarness.transactions: a function (broker) -> async context manager that opens a "
    "connection to the broker's database and begins a transaction on it, yielding an object "
    "with .connection, .commit() and .rollback() (docs/conformance.md)"
)
"""Why a transactional guarantee cannot be checked without the hook."""
