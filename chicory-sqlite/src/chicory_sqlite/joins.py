"""Workflow group joins on SQLite (:class:`chicory.workflow.joins.GroupJoins`).

One row of ``chicory_group_members`` per member. A join is one ``BEGIN IMMEDIATE``
transaction (the database's single writer), so concurrent joins of one group, from any
process, are taken one at a time and exactly one sees the group complete. Every join pushes
the whole group's expiry forward, so members recorded early do not expire before the last.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["record_member"]


def record_member(
    conn: sqlite3.Connection, group_id: str, index: int, size: int, data: bytes, ttl: float
) -> list[bytes] | None:
    """Record member ``index`` of ``group_id`` inside the caller's write transaction; every
    member's record in index order if all ``size`` are in now, else ``None``."""
    now = time.time()
    conn.execute(
        "DELETE FROM chicory_group_members WHERE group_id = ? AND expires_at <= ?",
        (group_id, now),
    )
    conn.execute(
        "INSERT OR REPLACE INTO chicory_group_members (group_id, member, data, expires_at)"
        " VALUES (?, ?, ?, ?)",
        (group_id, index, data, now + ttl),
    )
    conn.execute(
        "UPDATE chicory_group_members SET expires_at = ? WHERE group_id = ?",
        (now + ttl, group_id),
    )
    rows = conn.execute(
        "SELECT data FROM chicory_group_members WHERE group_id = ? AND member < ? ORDER BY member",
        (group_id, size),
    ).fetchall()
    return [bytes(row[0]) for row in rows] if len(rows) == size else None
