"""The SQLite broker's side of the ``unique_enqueue`` capability (:mod:`chicory.unique`).

A key is a row of ``chicory_unique_keys`` per ``(queue, key)``: its holder, the time its claim
lasts at least (``keep_until``) and the time it ends (``expires_at``). Each function runs in
one ``BEGIN IMMEDIATE`` transaction (the caller's), so the check, the claim and the publish
are one step for every process sharing the file: a key is claimed once. A claim whose time
ran out counts as free and is overwritten by the next claim; claims nobody asks about again
are deleted at most once a minute by a claim (an indexed range delete).
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["claim", "holder", "release"]

PRUNE_EVERY = 60.0
"""Seconds between two deletions of ended claims."""


def holder(conn: sqlite3.Connection, queue: str, key: str) -> str | None:
    """Who holds ``key`` in ``queue`` now, or ``None``."""
    row = conn.execute(
        "SELECT holder FROM chicory_unique_keys WHERE queue = ? AND key = ? AND expires_at > ?",
        (queue, key, time.time()),
    ).fetchone()
    return None if row is None else str(row[0])


def claim(
    conn: sqlite3.Connection,
    queue: str,
    key: str,
    who: str,
    hold: float,
    keep: float,
    *,
    prune: bool,
) -> str | None:
    """Claim ``key`` for ``who`` (at least ``keep`` s, at most ``hold`` s) if it is free.

    Returns:
        ``None`` when the claim was made; otherwise the current holder (nothing changed).
    """
    now = time.time()
    if prune:
        conn.execute("DELETE FROM chicory_unique_keys WHERE expires_at <= ?", (now,))
    current = holder(conn, queue, key)
    if current is not None:
        return current
    conn.execute(
        "INSERT OR REPLACE INTO chicory_unique_keys (queue, key, holder, keep_until, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (queue, key, who, now + keep, now + hold),
    )
    return None


def release(conn: sqlite3.Connection, queue: str, key: str, who: str) -> bool:
    """End ``who``'s claim on ``key`` now, or at its ``keep_until``; False if not its."""
    now = time.time()
    row = conn.execute(
        "SELECT holder, keep_until FROM chicory_unique_keys WHERE queue = ? AND key = ?"
        " AND expires_at > ?",
        (queue, key, now),
    ).fetchone()
    if row is None or row[0] != who:
        return False
    if row[1] > now:
        conn.execute(
            "UPDATE chicory_unique_keys SET expires_at = keep_until WHERE queue = ? AND key = ?",
            (queue, key),
        )
    else:
        conn.execute("DELETE FROM chicory_unique_keys WHERE queue = ? AND key = ?", (queue, key))
    return True
