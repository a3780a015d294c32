"""Revocation records on PostgreSQL (:class:`chicory.revocation.Revocations`).

One row of ``revocations`` per cancelled task id, with its expiry. A revoke upserts it
(never shortening a live record) and, in the same statement, sends ``NOTIFY
<schema>_revocations, '<task id> <expiry>'``; watchers hear it on the result backend's
LISTEN connection. With ``notify=False`` a watcher reads the table every ``poll_interval``
and yields what changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import anyio

from chicory_postgres.statements import TTL

__all__ = ["LIVE", "polled", "revoke_statement"]


LIVE: Final = (
    "SELECT task_id, expires_at FROM {s}.revocations WHERE expires_at > statement_timestamp()"
)
"""Every live revocation (``{s}``: the schema)."""


def revoke_statement(notify: bool) -> str:
    """The revoke: upsert the record for ``%(ttl)s`` seconds, never shortening a live one,
    and notify ``%(channel)s`` (nothing with ``notify=False``). ``{s}``: the schema."""
    notified = (
        "pg_notify(%(channel)s, up.task_id || ' ' || extract(epoch FROM up.expires_at))"
        if notify
        else "NULL"
    )
    return (
        "WITH up AS (INSERT INTO {s}.revocations AS r (task_id, expires_at) "
        f"VALUES (%(id)s, {TTL}) ON CONFLICT (task_id) DO UPDATE "
        "SET expires_at = CASE WHEN r.expires_at <= statement_timestamp() "
        "THEN EXCLUDED.expires_at ELSE greatest(r.expires_at, EXCLUDED.expires_at) END "
        f"RETURNING r.task_id, r.expires_at) SELECT {notified} FROM up"
    )


async def polled(
    seen: dict[str, float],
    read: Callable[[], Awaitable[dict[str, float]]],
    interval: float,
    closed: Callable[[], bool],
) -> AsyncIterator[tuple[str, float]]:
    """Yield ``(task_id, expires_at)`` for each revocation ``read()`` shows new or changed
    since ``seen`` (what was live when the subscription began), reading every ``interval``
    seconds until ``closed()``."""
    while not closed():
        await anyio.sleep(interval)
        now = await read()
        for task_id, expires in now.items():
            if seen.get(task_id) != expires:
                yield task_id, expires
        seen = now
