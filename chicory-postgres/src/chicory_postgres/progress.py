"""Progress feeds on PostgreSQL (:class:`chicory.progress.ProgressFeed`).

* ``store_progress`` upserts the task's non-final record (never over a live final one) and,
  in the same statement, sends ``NOTIFY <schema>_progress`` with ``'<task id> <record>'``:
  the record in base64 when it is at most :data:`INLINE_BYTES` long (a notification carries
  at most 8,000 bytes), else nothing after the space, and the subscriber reads the row.
  A notification is delivered when the statement commits, and in commit order.
* ``watch_progress`` listens on a connection of its own for as long as the subscription
  lasts (as a Redis subscription does), keeps the notifications of its task id and yields
  each record in order. Records too large to travel inline are read from the table, so a
  subscriber that falls behind may see the latest of several of those instead of each.
* With ``notify=False`` (a pooler that cannot hold a LISTEN session) nothing is sent; a
  subscriber reads the task's row every ``poll_interval`` and yields each new record it sees
  (records stored faster than that are seen as the latest).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final

import anyio
import psycopg
from psycopg import sql

from chicory_postgres.config import PostgresSettings
from chicory_postgres.connection import connect_kwargs, results_errors

__all__ = ["INLINE_BYTES", "STORE_PROGRESS", "watch"]

INLINE_BYTES: Final = 5000
"""The largest record a notification carries itself (base64 makes it 6,668 characters, with
room for a 255-character task id under PostgreSQL's 8,000-byte payload limit)."""

STORE_PROGRESS: Final = """
WITH up AS (
    INSERT INTO {s}.results AS r (task_id, data, final, expires_at)
    VALUES (%(id)s, %(data)s, false, statement_timestamp() + %(ttl)s * interval '1 second')
    ON CONFLICT (task_id) DO UPDATE
    SET data = EXCLUDED.data, final = false, expires_at = EXCLUDED.expires_at
    WHERE NOT r.final OR r.expires_at <= statement_timestamp()
    RETURNING r.task_id, r.data
)
SELECT {notify} FROM up
"""
"""Store a progress record and notify its subscribers (``{s}``: the schema; ``{notify}``:
the ``pg_notify`` call, or ``NULL`` with ``notify=False``)."""

NOTIFY: Final = (
    "pg_notify(%(channel)s, up.task_id || ' ' || CASE WHEN length(up.data) <= "
    f"{INLINE_BYTES} THEN translate(encode(up.data, 'base64'), E'\\n', '') ELSE '' END)"
)
"""The notification of one stored progress record."""

ReadRecord = Callable[[str], Any]
"""Reads the task's current record: ``(data, final)`` or ``None`` (awaitable)."""


@asynccontextmanager
async def watch(
    settings: PostgresSettings, channel: str, task_id: str, read: ReadRecord
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Subscribe to the progress records of ``task_id`` (see the module docstring).

    The iterator raises :class:`~chicory.errors.ResultBackendError` when the connection
    drops.

    Raises:
        ResultBackendError: PostgreSQL could not be reached.
    """
    if not settings.notify:
        first = await read(task_id)  # stored before the subscription: not pushed
        yield _polled(settings, task_id, read, None if first is None else first[0])
        return
    with results_errors(settings, f"subscribing to the progress of {task_id}"):
        conn = await psycopg.AsyncConnection.connect(settings.conninfo, **connect_kwargs(settings))
    try:
        with results_errors(settings, f"subscribing to the progress of {task_id}"):
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        yield _notified(settings, conn, task_id, read)
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


async def _notified(
    settings: PostgresSettings, conn: psycopg.AsyncConnection[Any], task_id: str, read: ReadRecord
) -> AsyncIterator[bytes]:
    with results_errors(settings, f"receiving the progress of {task_id}"):
        notes = conn.notifies()
        async with aclosing(notes):
            async for note in notes:
                noted, _, inline = note.payload.rpartition(" ")
                if noted != task_id:
                    continue
                if inline:
                    try:
                        yield base64.b64decode(inline, validate=True)
                    except binascii.Error:
                        continue
                    continue
                found = await read(task_id)
                if found is not None and not found[1]:
                    yield found[0]


async def _polled(
    settings: PostgresSettings, task_id: str, read: ReadRecord, last: bytes | None
) -> AsyncIterator[bytes]:
    while True:
        await anyio.sleep(settings.poll_interval)
        found = await read(task_id)
        if found is None:
            continue
        data, final = found
        if final:
            return
        if data != last:
            last = data
            yield data
