"""The SQLite broker's side of the ``unique_enqueue`` capability (:mod:`chicory.unique`).

A claim is a row of ``chicory_unique_claims`` (queue, key, holder, the time it lasts at least,
the time it ends; this host's clock). Each operation is one write transaction, so checking
the key, claiming it and inserting the message happen together: SQLite lets one writer in
at a time, so concurrent publishers of one key (processes included) claim it once. An
ended claim is replaced by the next claim of its key, deleted with its queue, or deleted by
the broker's next claim once ``PRUNE_EVERY`` seconds passed since it last pruned.
"""

from __future__ import annotations

import sqlite3
import time

from chicory.unique import UniqueClaim
from chicory_sqlite.statements import QueueStatements

__all__ = ["PRUNE_EVERY", "claim_and_publish", "holder", "release"]

PRUNE_EVERY = 60.0
"""Seconds between two deletions of ended claims by a broker (keys claimed once and never
again, and released keys whose keep time ran out, would otherwise stay as rows)."""


def holder(conn: sqlite3.Connection, queue: str, key: str, now: float | None = None) -> str | None:
    """Who holds ``key`` in ``queue`` now (``None``: free)."""
    row = conn.execute(
        "SELECT holder FROM chicory_unique_claims WHERE queue = ? AND key = ? AND expires_at > ?",
        (queue, key, time.time() if now is None else now),
    ).fetchone()
    return None if row is None else str(row[0])


def claim_and_publish(
    conn: sqlite3.Connection,
    statements: QueueStatements,
    queue: str,
    item: tuple[bytes, str, float | None],
    *,
    key: str,
    who: str,
    hold: float,
    keep: float,
    prune: bool = False,
) -> UniqueClaim:
    """Claim ``key`` and insert the message ``item``, or neither when the key is held;
    ``prune`` first deletes every ended claim (an indexed range delete)."""
    now = time.time()
    if prune:
        conn.execute("DELETE FROM chicory_unique_claims WHERE expires_at <= ?", (now,))
    current = holder(conn, queue, key, now)
    if current is not None:
        return UniqueClaim(message_id=None, holder=current)
    conn.execute(
        "INSERT OR REPLACE INTO chicory_unique_claims (queue, key, holder, keep_until, "
        "expires_at) VALUES (?, ?, ?, ?, ?)",
        (queue, key, who, now + keep, now + hold),
    )
    (message_id,) = statements.publish(conn, queue, [item])
    return UniqueClaim(message_id=message_id, holder=who)


def release(conn: sqlite3.Connection, queue: str, key: str, who: str) -> bool:
    """End ``who``'s claim on ``key`` (now, or at its keep time); False if not its."""
    now = time.time()
    row = conn.execute(
        "SELECT holder, keep_until FROM chicory_unique_claims WHERE queue = ? AND key = ? "
        "AND expires_at > ?",
        (queue, key, now),
    ).fetchone()
    if row is None or row[0] != who:
        return False
    if row[1] > now:
        conn.execute(
            "UPDATE chicory_unique_claims SET expires_at = keep_until WHERE queue = ? AND key = ?",
            (queue, key),
        )
    else:
        conn.execute("DELETE FROM chicory_unique_claims WHERE queue = ? AND key = ?", (queue, key))
    return True
