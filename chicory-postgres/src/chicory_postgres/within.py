"""Statements on the caller's own connection, inside its open transaction.

What ``app.transaction(conn)`` hands the broker is the application's connection: a psycopg 3
``AsyncConnection``, a SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` (on the psycopg or
the asyncpg driver), or an asyncpg ``Connection`` (a pool's acquired connection included;
``pip install 'chicory-postgres[asyncpg]'``). :func:`caller_connection` finds the driver
connection behind it, and :meth:`CallerConnection.fetch` runs one of the broker's statements
on it, written once in psycopg's ``%(name)s`` style and rewritten to asyncpg's ``$n`` for an
asyncpg connection. Nothing here commits or rolls back anything, nor begins a transaction,
except SQLAlchemy's own autobegin (a first statement sent through SQLAlchemy, so that it
knows the transaction it has to end); a connection that would commit the enqueue at once is
refused.

asyncpg is never imported here: a caller holding an asyncpg connection has imported it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import attrs
import psycopg

from chicory.errors import BrokerError, CapabilityError

__all__ = ["CallerConnection", "asyncpg_statement", "caller_connection"]

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


@lru_cache(maxsize=64)
def asyncpg_statement(statement: str) -> tuple[str, tuple[str, ...]]:
    """``statement`` with ``%(name)s`` rewritten to ``$n`` (and ``%%`` to ``%``), and the
    parameter names in ``$n`` order (a name used twice is one parameter)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(number, statement), tuple(names)


@attrs.frozen
class CallerConnection:
    """The driver connection behind what the caller passed (see the module docstring).

    Attributes:
        driver: A psycopg ``AsyncConnection`` or an asyncpg connection.
        asyncpg: Whether ``driver`` is asyncpg's.
    """

    driver: Any
    asyncpg: bool

    async def fetch(self, statement: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run ``statement`` (psycopg style) with ``params``; return its rows.

        Raises:
            Exception: whatever the driver raises (the caller's transaction is then aborted,
                as with any failed statement in it).
        """
        if self.asyncpg:
            text, names = asyncpg_statement(statement)
            records = await self.driver.fetch(text, *(params[name] for name in names))
            return [tuple(record) for record in records]
        cursor = await self.driver.execute(statement, params)
        return list(await cursor.fetchall())


def _is_asyncpg(connection: object) -> bool:
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return False
    kinds = (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)
    return isinstance(connection, kinds)


def _direct(connection: object) -> CallerConnection | None:
    if isinstance(connection, psycopg.AsyncConnection):
        return CallerConnection(connection, asyncpg=False)
    if _is_asyncpg(connection):
        return CallerConnection(connection, asyncpg=True)
    return None


def _in_transaction(found: CallerConnection, connection: object) -> CallerConnection:
    """``found``, unless a statement on it would be committed at once (no transaction)."""
    if found.asyncpg:
        open_ = bool(found.driver.is_in_transaction())
    else:  # psycopg begins one by itself unless in autocommit mode
        idle = found.driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        open_ = not (found.driver.autocommit and idle)
    if not open_:
        raise BrokerError(
            f"cannot enqueue inside the transaction of {type(connection).__name__}: it has no "
            "open transaction, so the task would be committed at once; open one first "
            "(async with conn.transaction(): ...), then enter app.transaction(conn) inside it"
        )
    return found


async def caller_connection(connection: object) -> CallerConnection:
    """The driver connection behind ``connection`` (psycopg, asyncpg or SQLAlchemy async).

    Raises:
        CapabilityError: it is not one the broker can publish on.
        BrokerError: it has no open transaction (psycopg in autocommit mode, asyncpg outside
            ``conn.transaction()``): the enqueue would be committed at once.
    """
    found = _direct(connection)
    if found is not None:
        return _in_transaction(found, connection)
    # SQLAlchemy: an AsyncConnection has get_raw_connection(); an AsyncSession gives the
    # AsyncConnection of its current transaction (begun if needed) through connection().
    sa_conn: Any = connection
    if not hasattr(sa_conn, "get_raw_connection") and callable(
        getattr(sa_conn, "connection", None)
    ):
        sa_conn = await sa_conn.connection()
    if hasattr(sa_conn, "get_raw_connection"):
        raw = await sa_conn.get_raw_connection()
        found = _direct(getattr(raw, "driver_connection", None))
        if found is not None:
            if not sa_conn.in_transaction() or (
                found.asyncpg and not found.driver.is_in_transaction()
            ):
                # SQLAlchemy begins its transaction with the first statement it sends (its
                # asyncpg dialect sends BEGIN only then): send one through SQLAlchemy, so
                # that the enqueue joins a transaction SQLAlchemy knows it has to end.
                await sa_conn.exec_driver_sql("SELECT 1")
            return _in_transaction(found, connection)
    raise CapabilityError(
        f"cannot enqueue inside the transaction of {type(connection).__name__}: the PostgreSQL "
        "broker publishes on a psycopg AsyncConnection, an asyncpg Connection (pip install "
        "'chicory-postgres[asyncpg]'), or a SQLAlchemy AsyncSession or AsyncConnection on "
        "either driver (postgresql+psycopg:// or postgresql+asyncpg://)"
    )
