"""Progress feeds on PostgreSQL (:class:`chicory.progress.ProgressFeed`).

* ``store_progress`` is one statement: it upserts the task's non-final record in ``results``
  (never over a live final one) and, if it was stored, appends the report to the log table
  ``progress`` (``seq`` grows with every report; rows live :data:`LOG_SECONDS`) and sends
  ``NOTIFY <schema>_progress, '<seq> <task id> <report>'``: the report in base64 when it is
  at most :data:`INLINE_BYTES` long (a notification carries at most 8,000 bytes), else
  nothing after the last space. A notification is delivered when the statement commits.
* ``watch_progress`` listens on a connection of its own for as long as the subscription
  lasts (as a Redis subscription does) and keeps the notifications of its task id. A report
  that travelled inline is yielded as it is; for one that did not, the subscriber reads the
  log rows of its task after the last ``seq`` it yielded: every report, in order.
* With ``notify=False`` (a pooler that cannot hold a LISTEN session) nothing is sent; the
  subscriber reads its task's log rows after the last ``seq`` every ``poll_interval``: every
  report, in order, at most that late.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final

import anyio
import psycopg
from psycopg import sql

from chicory_postgres.config import PostgresSettings
from chicory_postgres.connection import connect_kwargs, results_errors

__all__ = ["INLINE_BYTES", "LAST_SEQ", "LOG_SECONDS", "NOTIFY", "REPORTS_AFTER", "STORE", "watch"]

INLINE_BYTES: Final = 5000
"""The largest report a notification carries itself (base64 makes it 6,668 characters, with
room for a sequence number and a 255-character task id under the 8,000-byte limit)."""

LOG_SECONDS: Final = 300
"""How long a report stays in the ``progress`` log (subscribers read it within moments; the
record in ``results`` lives its ttl)."""

STORE: Final = f"""
WITH up AS (
    INSERT INTO {{s}}.results AS r (task_id, data, final, expires_at)
    VALUES (%(id)s, %(data)s, false, statement_timestamp() + %(ttl)s * interval '1 second')
    ON CONFLICT (task_id) DO UPDATE
    SET data = EXCLUDED.data, final = false, expires_at = EXCLUDED.expires_at
    WHERE NOT r.final OR r.expires_at <= statement_timestamp()
    RETURNING r.task_id, r.data
), logged AS (
    INSERT INTO {{s}}.progress (task_id, data, expires_at)
    SELECT task_id, data, statement_timestamp() + interval '{LOG_SECONDS} seconds' FROM up
    RETURNING seq, task_id, data
)
SELECT {{notify}} FROM logged
"""
"""Store and log a report, and notify its subscribers (``{s}``: the schema; ``{notify}``:
:data:`NOTIFY`, or ``NULL`` with ``notify=False``)."""

NOTIFY: Final = (
    "pg_notify(%(channel)s, logged.seq || ' ' || logged.task_id || ' ' || CASE WHEN "
    f"length(logged.data) <= {INLINE_BYTES} "
    "THEN translate(encode(logged.data, 'base64'), E'\\n', '') ELSE '' END)"
)
"""The notification of one logged report."""

LAST_SEQ: Final = (
    "SELECT coalesce(max(seq), 0) FROM {s}.progress "
    "WHERE task_id = %(id)s AND expires_at > statement_timestamp()"
)
"""The last ``seq`` logged for a task (0 for none)."""

REPORTS_AFTER: Final = (
    "SELECT seq, data FROM {s}.progress WHERE task_id = %(id)s AND seq > %(after)s "
    "AND expires_at > statement_timestamp() ORDER BY seq"
)
"""A task's reports after a ``seq``, in order."""

Rows = Callable[[str, dict[str, Any]], Awaitable[list[Any]]]
"""Runs a statement (``{s}`` filled in) with parameters; its rows."""


@asynccontextmanager
async def watch(
    settings: PostgresSettings, channel: str, task_id: str, rows: Rows
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Subscribe to the progress reports of ``task_id`` (see the module docstring).

    The iterator raises :class:`~chicory.errors.ResultBackendError` when the connection
    drops.

    Raises:
        ResultBackendError: PostgreSQL could not be reached.
    """
    if not settings.notify:
        last = await _last_seq(rows, task_id)
        yield _polled(settings, task_id, rows, last)
        return
    with results_errors(settings, f"subscribing to the progress of {task_id}"):
        conn = await psycopg.AsyncConnection.connect(settings.conninfo, **connect_kwargs(settings))
    try:
        with results_errors(settings, f"subscribing to the progress of {task_id}"):
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        last = await _last_seq(rows, task_id)  # reports logged before LISTEN: not pushed
        yield _notified(settings, conn, task_id, rows, last)
    finally:
        with anyio.CancelScope(shield=True):
            await conn.close()


async def _last_seq(rows: Rows, task_id: str) -> int:
    found = await rows(LAST_SEQ, {"id": task_id})
    return int(found[0][0]) if found else 0


async def _notified(
    settings: PostgresSettings,
    conn: psycopg.AsyncConnection[Any],
    task_id: str,
    rows: Rows,
    last: int,
) -> AsyncIterator[bytes]:
    with results_errors(settings, f"receiving the progress of {task_id}"):
        notes = conn.notifies()
        async with aclosing(notes):
            async for note in notes:
                seq_text, _, rest = note.payload.partition(" ")
                noted, _, inline = rest.rpartition(" ")
                if noted != task_id or not seq_text.isdigit() or int(seq_text) <= last:
                    continue
                if inline:
                    try:
                        data = base64.b64decode(inline, validate=True)
                    except binascii.Error:
                        continue
                    last = int(seq_text)
                    yield data
                    continue
                for seq, data in await rows(REPORTS_AFTER, {"id": task_id, "after": last}):
                    last = int(seq)
                    yield bytes(data)


async def _polled(
    settings: PostgresSettings, task_id: str, rows: Rows, last: int
) -> AsyncIterator[bytes]:
    while True:
        await anyio.sleep(settings.poll_interval)
        for seq, data in await rows(REPORTS_AFTER, {"id": task_id, "after": last}):
            last = int(seq)
            yield bytes(data)
