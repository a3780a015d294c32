"""Connections: the psycopg pool, error translation, and the LISTEN connection.

Every statement runs on a pooled connection in autocommit mode (each statement is its own
transaction; the broker's statements are each atomic on their own). One more connection per
broker or result backend is kept out of the pool for ``LISTEN``: :class:`Listener` reads its
notifications and reconnects with back-off when it drops, telling its subscribers so that they
look at the tables again (a notification sent while it was down is never delivered).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import anyio
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from chicory.errors import BrokerConnectionError, ResultBackendError
from chicory_postgres.config import PostgresSettings
from chicory_postgres.schema import ensure_schema

__all__ = ["Listener", "broker_errors", "open_pool", "results_errors"]

log = logging.getLogger("chicory.postgres")

CONNECTION_ERRORS = (psycopg.OperationalError, PoolTimeout, OSError)
"""Errors meaning the server could not be reached or the connection broke."""


@contextmanager
def broker_errors(settings: PostgresSettings, doing: str) -> Iterator[None]:
    """Turn driver errors into :class:`~chicory.errors.BrokerConnectionError`."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise BrokerConnectionError(
            f"PostgreSQL at {settings.display_url} failed while {doing}: {exc}"
        ) from exc


@contextmanager
def results_errors(settings: PostgresSettings, doing: str) -> Iterator[None]:
    """Turn driver errors into :class:`~chicory.errors.ResultBackendError`."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise ResultBackendError(
            f"PostgreSQL at {settings.display_url} failed while {doing}: {exc}"
        ) from exc


def connect_kwargs(settings: PostgresSettings) -> dict[str, Any]:
    """Keyword arguments of every connection Chicory opens."""
    return {"autocommit": True, "prepare_threshold": settings.prepare_threshold}


async def open_pool(settings: PostgresSettings, name: str) -> AsyncConnectionPool:
    """Open a pool on ``settings`` and bring the schema up to date (or refuse it).

    Raises:
        psycopg.OperationalError / PoolTimeout: the server cannot be reached.
        ConfigurationError: the schema is behind and ``migrate`` is off.
    """
    pool: AsyncConnectionPool = AsyncConnectionPool(
        settings.conninfo,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.pool_timeout,
        kwargs=connect_kwargs(settings),
        name=name,
        open=False,
        reconnect_timeout=0,
    )
    try:
        await pool.open(wait=True, timeout=settings.pool_timeout)
        async with pool.connection() as conn:
            await ensure_schema(conn, settings.schema, allowed=settings.migrate)
    except BaseException:
        await pool.close()
        raise
    return pool


class Listener:
    """One LISTEN connection and the callbacks it feeds.

    Args:
        settings: Where to connect.
        channels: The channels to listen on.
        on_notify: Called with ``(channel, payload)`` for each notification.
        on_reconnect: Called once the connection is (re)established: whatever was
            notified while it was down is lost, so subscribers look again.
        on_drop: Called when the connection drops (default: ``on_reconnect``).
    """

    def __init__(
        self,
        settings: PostgresSettings,
        channels: list[str],
        on_notify: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._channels = channels
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._on_drop = on_drop if on_drop is not None else on_reconnect
        self._task: asyncio.Task[None] | None = None
        self._up = anyio.Event()
        self._stopping = False
        self.connected = False

    async def wait_connected(self) -> None:
        """Return once the LISTEN connection is up (at once if it is)."""
        while not self.connected:
            await self._up.wait()

    def start(self) -> None:
        """Start listening in a task this listener owns (stopped by :meth:`stop`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="chicory-postgres-listen"
            )

    async def stop(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        task, self._task = self._task, None
        self._stopping = True
        with anyio.CancelScope(shield=True):
            # Cancelled again until it ends: a driver call may swallow one cancellation
            # (a connect in progress fails with its own error instead).
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)

    async def _run(self) -> None:
        delay = 0.05
        while not self._stopping:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._settings.conninfo, **connect_kwargs(self._settings)
                )
            except CONNECTION_ERRORS as exc:
                log.warning("LISTEN connection to %s failed: %s", self._settings.display_url, exc)
                await anyio.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, self._settings.reconnect_backoff_max)
                continue
            try:
                for channel in self._channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                self.connected = True
                self._up.set()
                delay = 0.05
                self._on_reconnect()
                notes = conn.notifies()
                async with aclosing(notes):  # releases the connection's lock if cancelled
                    async for note in notes:
                        self._on_notify(note.channel, note.payload)
            except CONNECTION_ERRORS as exc:
                log.warning("LISTEN connection to %s dropped: %s", self._settings.display_url, exc)
            finally:
                self.connected = False
                self._up = anyio.Event()
                with anyio.CancelScope(shield=True):
                    await conn.close()
            self._on_drop()  # wake everyone: they poll until the connection is back
            await anyio.sleep(delay * (1 + random.random()))
