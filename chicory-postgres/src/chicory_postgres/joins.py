"""Workflow group joins on PostgreSQL (:class:`chicory.workflow.joins.GroupJoins`).

One row of ``group_members`` per member. A join runs in one transaction that first takes an
advisory lock on the group (``pg_advisory_xact_lock``), so concurrent joins of one group are
taken one at a time and exactly one of them sees the group complete; the lock ends with the
transaction. Every join pushes the whole group's expiry forward, so members recorded early do
not expire before the last one arrives.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

__all__ = ["join"]

_STATEMENTS: Final = (
    # Members of an earlier group of the same id whose rows outlived it.
    "DELETE FROM {s}.group_members WHERE group_id = %(group)s "
    "AND expires_at <= statement_timestamp()",
    "INSERT INTO {s}.group_members (group_id, member, data, expires_at) "
    "VALUES (%(group)s, %(member)s, %(data)s, statement_timestamp() "
    "+ make_interval(secs => %(ttl)s)) ON CONFLICT (group_id, member) "
    "DO UPDATE SET data = excluded.data",
    "UPDATE {s}.group_members SET expires_at = statement_timestamp() "
    "+ make_interval(secs => %(ttl)s) WHERE group_id = %(group)s",
)

_MEMBERS: Final = (
    "SELECT data FROM {s}.group_members WHERE group_id = %(group)s "
    "AND member < %(size)s ORDER BY member"
)


async def join(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    group_id: str,
    index: int,
    size: int,
    data: bytes,
    ttl: float,
) -> list[bytes] | None:
    """Record member ``index`` of ``group_id`` on ``conn``, inside the transaction the caller
    opened; every member's record in index order if all ``size`` are in now, else ``None``.

    ``schema`` is the quoted schema name.
    """
    params = {"group": group_id, "member": index, "data": data, "ttl": ttl, "size": size}
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%(lock)s))", {"lock": f"chicory-group:{group_id}"}
    )
    for statement in _STATEMENTS:
        await conn.execute(statement.replace("{s}", schema), params, binary=True)
    cur = await conn.execute(_MEMBERS.replace("{s}", schema), params, binary=True)
    rows = await cur.fetchall()
    return [bytes(row[0]) for row in rows] if len(rows) == size else None
