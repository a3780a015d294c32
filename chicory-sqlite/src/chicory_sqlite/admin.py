"""The broker's statements for counting, dead letters, inspection and delayed listing.

Synchronous, run on the connection's thread; a function that changes anything runs in one
``BEGIN IMMEDIATE`` transaction (see :meth:`chicory_sqlite.database.Database.write`), so a
requeue of a dead letter, or the removal of a delayed message, happens whole or not at all.
Dead letter ids are the row ids of ``chicory_dead_letters`` (they grow with time), so a page
is an index range from a cursor, never a scan of what came before it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from chicory.broker import DeadLetter, QueueCounts
from chicory.delayed import DelayedMessage, DelayedPage
from chicory.inspection import DeadLetterPage, QueueStats
from chicory_sqlite.statements import header_priority

__all__ = [
    "CONSUMER_STALE_SECONDS",
    "counts",
    "dead_letter_page",
    "dead_letters",
    "delayed_page",
    "delete_queue",
    "forget_consumer",
    "get_dead_letter",
    "micros",
    "queue_names",
    "queue_stats",
    "register_consumer",
    "remove_delayed",
    "replay",
]

CONSUMER_STALE_SECONDS = 60.0
"""A consumer row not refreshed for this long belongs to a dead process: not counted."""

_DEAD_COLUMNS = "id, queue, body, headers, reason, delivery_count, dead_at"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """An aware datetime as whole microseconds since the epoch (how ``dead_at`` is stored:
    exact, so a letter's own ``dead_at`` selects it)."""
    return (moment - _EPOCH) // _MICROSECOND


def _letter(row: Sequence[Any]) -> DeadLetter:
    dl_id, queue, body, headers, reason, count, dead_at = row
    return DeadLetter(
        id=str(dl_id),
        queue=queue,
        body=bytes(body),
        headers=json.loads(headers),
        reason=reason,
        delivery_count=count,
        dead_at=_EPOCH + dead_at * _MICROSECOND,
    )


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def counts(conn: sqlite3.Connection, queue: str) -> QueueCounts:
    """Ready, in-flight, delayed and dead counts of ``queue``."""
    ready, in_flight, delayed = conn.execute(
        "SELECT COALESCE(SUM(available_at <= :now), 0),"
        " COALESCE(SUM(token IS NOT NULL AND available_at > :now), 0),"
        " COALESCE(SUM(token IS NULL AND available_at > :now), 0)"
        " FROM chicory_messages WHERE queue = :queue",
        {"now": time.time(), "queue": queue},
    ).fetchone()
    (dead,) = conn.execute(
        "SELECT COUNT(*) FROM chicory_dead_letters WHERE queue = ?", (queue,)
    ).fetchone()
    return QueueCounts(ready=ready, in_flight=in_flight, delayed=delayed, dead=dead)


def queue_stats(conn: sqlite3.Connection, queues: Sequence[str]) -> list[QueueStats]:
    """The stats of each of ``queues``, in order (run it in a transaction: one snapshot)."""
    out = []
    now = time.time()
    for queue in queues:
        count = counts(conn, queue)
        (oldest,) = conn.execute(
            "SELECT MIN(available_at) FROM chicory_messages WHERE queue = ? AND available_at <= ?",
            (queue, now),
        ).fetchone()
        (consumers,) = conn.execute(
            "SELECT COUNT(*) FROM chicory_consumers WHERE queue = ? AND seen_at > ?",
            (queue, now - CONSUMER_STALE_SECONDS),
        ).fetchone()
        out.append(
            QueueStats(
                queue=queue,
                ready=count.ready,
                in_flight=count.in_flight,
                delayed=count.delayed,
                dead=count.dead,
                consumers=consumers,
                oldest_ready_at=(
                    datetime.fromtimestamp(oldest, UTC) if oldest is not None else None
                ),
            )
        )
    return out


def queue_names(conn: sqlite3.Connection) -> list[str]:
    """Every queue published to, consumed or holding dead letters, sorted."""
    return [name for (name,) in conn.execute("SELECT name FROM chicory_queues ORDER BY name")]


def register_consumer(conn: sqlite3.Connection, consumer: str, queues: Sequence[str]) -> None:
    """Record (or refresh) that ``consumer`` consumes ``queues``; the queues become known."""
    now = time.time()
    for queue in queues:
        conn.execute("INSERT OR IGNORE INTO chicory_queues (name) VALUES (?)", (queue,))
        conn.execute(
            "INSERT OR REPLACE INTO chicory_consumers (consumer, queue, seen_at) VALUES (?, ?, ?)",
            (consumer, queue, now),
        )
    conn.execute("DELETE FROM chicory_consumers WHERE seen_at < ?", (now - CONSUMER_STALE_SECONDS,))


def forget_consumer(conn: sqlite3.Connection, consumer: str) -> None:
    """Remove the rows of a closed consumer."""
    conn.execute("DELETE FROM chicory_consumers WHERE consumer = ?", (consumer,))


def dead_letters(conn: sqlite3.Connection, queue: str, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` dead letters of ``queue``, oldest first."""
    rows = conn.execute(
        f"SELECT {_DEAD_COLUMNS} FROM chicory_dead_letters WHERE queue = ? ORDER BY id LIMIT ?",
        (queue, max(0, limit)),
    ).fetchall()
    return [_letter(row) for row in rows]


def get_dead_letter(conn: sqlite3.Connection, queue: str, dead_letter_id: str) -> DeadLetter | None:
    """One dead letter of ``queue`` by id, or ``None``."""
    row_id = _id(dead_letter_id)
    if row_id is None:
        return None
    row = conn.execute(
        f"SELECT {_DEAD_COLUMNS} FROM chicory_dead_letters WHERE queue = ? AND id = ?",
        (queue, row_id),
    ).fetchone()
    return _letter(row) if row is not None else None


def dead_letter_page(
    conn: sqlite3.Connection,
    queue: str,
    *,
    after: str | None,
    limit: int,
    since: datetime | None,
    until: datetime | None,
    newest_first: bool,
) -> DeadLetterPage:
    """One page of ``queue``'s dead letters (see ``InspectableBroker.dead_letter_page``).

    Raises:
        ValueError: ``limit`` is below 1, or a time is naive.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    where = ["queue = ?"]
    args: list[Any] = [queue]
    if since is not None:
        where.append("dead_at >= ?")
        args.append(micros(since))
    if until is not None:
        where.append("dead_at < ?")
        args.append(micros(until))
    if after is not None:
        mark = _id(after)
        if mark is None:
            raise ValueError(f"{after!r} is not a dead letter id of the sqlite broker")
        where.append("id < ?" if newest_first else "id > ?")
        args.append(mark)
    order = "DESC" if newest_first else "ASC"
    rows = conn.execute(
        f"SELECT {_DEAD_COLUMNS} FROM chicory_dead_letters WHERE {' AND '.join(where)}"
        f" ORDER BY id {order} LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    letters = [_letter(row) for row in rows[:limit]]
    more = len(rows) > limit
    return DeadLetterPage(letters=letters, next_after=letters[-1].id if more else None)


def replay(
    conn: sqlite3.Connection,
    queue: str,
    dead_letter_id: str,
    replacement: tuple[bytes, str] | None = None,
) -> bool:
    """Delete a dead letter and publish it (or ``replacement``: body, headers JSON) as a new
    ready message; False, changing nothing, if ``queue`` has no such dead letter."""
    row_id = _id(dead_letter_id)
    if row_id is None:
        return False
    row = conn.execute(
        "DELETE FROM chicory_dead_letters WHERE queue = ? AND id = ? RETURNING body, headers",
        (queue, row_id),
    ).fetchone()
    if row is None:
        return False
    body, headers = replacement if replacement is not None else row
    conn.execute("INSERT OR IGNORE INTO chicory_queues (name) VALUES (?)", (queue,))
    conn.execute(
        "INSERT INTO chicory_messages (queue, body, headers, available_at, priority)"
        " VALUES (?, ?, ?, ?, ?)",
        (queue, body, headers, time.time(), header_priority(headers)),
    )
    return True


def delete_queue(conn: sqlite3.Connection, queue: str) -> None:
    """Delete every message, dead letter, consumer row and unique-key claim of ``queue``,
    and its name."""
    for table, column in (
        ("chicory_messages", "queue"),
        ("chicory_dead_letters", "queue"),
        ("chicory_consumers", "queue"),
        ("chicory_unique_claims", "queue"),
        ("chicory_queues", "name"),
    ):
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (queue,))


def delayed_page(
    conn: sqlite3.Connection, queue: str, *, after: str | None, limit: int
) -> DelayedPage:
    """Up to ``limit`` delayed messages of ``queue``, soonest due first, then by id (a
    cursor is ``"<due>/<id>"``).

    Raises:
        ValueError: ``limit`` is below 1, or ``after`` is not such a cursor.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    where = "queue = ? AND token IS NULL AND available_at > ?"
    args: list[Any] = [queue, time.time()]
    if after is not None:
        due_text, _, id_text = after.partition("/")
        try:
            mark = (float(due_text), int(id_text))
        except ValueError:
            raise ValueError(
                f"{after!r} is not a delayed-page cursor of the sqlite broker"
            ) from None
        where += " AND (available_at > ? OR (available_at = ? AND id > ?))"
        args += [mark[0], mark[0], mark[1]]
    rows = conn.execute(
        f"SELECT id, body, headers, available_at FROM chicory_messages WHERE {where}"
        " ORDER BY available_at, id LIMIT ?",
        (*args, limit + 1),
    ).fetchall()
    messages = [
        DelayedMessage(
            id=str(message_id),
            queue=queue,
            body=bytes(body),
            headers=json.loads(headers),
            due_at=datetime.fromtimestamp(due, UTC),
        )
        for message_id, body, headers, due in rows[:limit]
    ]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return DelayedPage(
        messages=messages, next_after=f"{last[3]!r}/{last[0]}" if last is not None else None
    )


def remove_delayed(conn: sqlite3.Connection, queue: str, message_id: str) -> bool:
    """Delete the delayed message ``message_id`` of ``queue``; False if it is not delayed."""
    row_id = _id(message_id)
    if row_id is None:
        return False
    cursor = conn.execute(
        "DELETE FROM chicory_messages WHERE queue = ? AND id = ? AND token IS NULL"
        " AND available_at > ?",
        (queue, row_id, time.time()),
    )
    return cursor.rowcount > 0
