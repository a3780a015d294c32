"""Every SQL statement of the ``example://`` broker, each one atomic.

One table holds live messages, one holds dead letters. A live message is

* **ready** when nobody holds it and ``available_at <= now``,
* **delayed** when nobody holds it and ``available_at > now``,
* **in flight** when a consumer holds it and its lease (``available_at``) has not expired.

A held message whose lease expired is ready again: the next claim takes it over. Each claim
gives the delivery a fresh ``token``; a settle only applies while the token still matches, so
a late ack from a consumer that lost its lease cannot remove someone else's delivery.

All methods are synchronous and run on the event loop thread; every change is one
``BEGIN IMMEDIATE`` transaction, so several processes can share one database file.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import attrs

from chicory.broker import DeadLetter, QueueCounts

__all__ = ["Claimed", "Store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    position INTEGER NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    available_at REAL NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    consumer TEXT,
    token TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (queue, available_at, position);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    reason TEXT NOT NULL,
    delivery_count INTEGER NOT NULL,
    dead_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (n INTEGER NOT NULL);
"""


@attrs.frozen(kw_only=True)
class Claimed:
    """A message handed to a consumer by :meth:`Store.claim`."""

    id: str
    queue: str
    body: bytes
    headers: Mapping[str, str]
    delivery_count: int
    token: str


class Store:
    """The broker's database.

    Args:
        path: A database file, or ``":memory:"`` for a private in-memory database.
        lease_seconds: Default lease of a claimed message.
        max_deliveries: Dead-letter instead of delivering a message a ``max + 1``-th time.
    """

    def __init__(self, path: str, lease_seconds: float, max_deliveries: int | None) -> None:
        self.lease_seconds = lease_seconds
        self.max_deliveries = max_deliveries
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.executescript(SCHEMA)
        with self._tx() as db:
            if db.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0:
                db.execute("INSERT INTO counter (n) VALUES (0)")

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @staticmethod
    def _next_position(db: sqlite3.Connection) -> int:
        db.execute("UPDATE counter SET n = n + 1")
        position: int = db.execute("SELECT n FROM counter").fetchone()[0]
        return position

    # -- publishing -------------------------------------------------------------------------

    def enqueue(
        self, queue: str, items: Sequence[tuple[bytes, Mapping[str, str], float]]
    ) -> list[str]:
        """Insert messages ``(body, headers, available_at)``; return their new ids."""
        ids = []
        with self._tx() as db:
            for body, headers, available_at in items:
                message_id = uuid.uuid4().hex
                db.execute(
                    "INSERT INTO messages (id, queue, position, body, headers, available_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        message_id,
                        queue,
                        self._next_position(db),
                        body,
                        json.dumps(dict(headers)),
                        available_at,
                    ),
                )
                ids.append(message_id)
        return ids

    # -- consuming --------------------------------------------------------------------------

    def claim(
        self, consumer: str, queues: Sequence[str], max_count: int, prefetch: int, now: float
    ) -> list[Claimed]:
        """Hand up to ``max_count`` ready messages to ``consumer`` (within its prefetch)."""
        marks = ",".join("?" * len(queues))
        claimed: list[Claimed] = []
        with self._tx() as db:
            held = db.execute(
                "SELECT COUNT(*) FROM messages WHERE consumer = ? AND available_at > ?",
                (consumer, now),
            ).fetchone()[0]
            room = min(max_count, prefetch - held)
            while room > 0:
                rows = db.execute(
                    f"SELECT id, queue, body, headers, delivery_count FROM messages"
                    f" WHERE queue IN ({marks}) AND available_at <= ?"
                    f" ORDER BY position LIMIT ?",
                    (*queues, now, room),
                ).fetchall()
                if not rows:
                    break
                for message_id, queue, body, headers, count in rows:
                    if self.max_deliveries is not None and count >= self.max_deliveries:
                        reason = (
                            f"delivered {count} times without being settled "
                            f"(max_deliveries={self.max_deliveries})"
                        )
                        self._bury(db, message_id, queue, body, headers, reason, count, now)
                        db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
                        continue
                    token = uuid.uuid4().hex
                    db.execute(
                        "UPDATE messages SET consumer = ?, token = ?, available_at = ?,"
                        " delivery_count = delivery_count + 1 WHERE id = ?",
                        (consumer, token, now + self.lease_seconds, message_id),
                    )
                    claimed.append(
                        Claimed(
                            id=message_id,
                            queue=queue,
                            body=bytes(body),
                            headers=json.loads(headers),
                            delivery_count=count + 1,
                            token=token,
                        )
                    )
                    room -= 1
        return claimed

    def release_consumer(self, consumer: str, now: float) -> None:
        """Hand everything ``consumer`` holds back: ready now, in its original place."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET consumer = NULL, token = NULL, available_at = ?"
                " WHERE consumer = ?",
                (now, consumer),
            )

    def next_due(self, queues: Sequence[str], now: float) -> float | None:
        """The next time after ``now`` a message of the queues becomes ready (a delay ends
        or a lease lapses), for waking up a fetch; messages ready already are not counted:
        a fetch that found them but no prefetch room waits for a settle instead."""
        marks = ",".join("?" * len(queues))
        due: float | None = self._db.execute(
            f"SELECT MIN(available_at) FROM messages WHERE queue IN ({marks}) AND available_at > ?",
            (*queues, now),
        ).fetchone()[0]
        return due

    # -- settling (each applies only while ``token`` still holds the message) ----------------

    def ack(self, message_id: str, token: str) -> bool:
        """Delete the message; False if ``token`` no longer holds it (nothing deleted)."""
        with self._tx() as db:
            deleted: int = db.execute(
                "DELETE FROM messages WHERE id = ? AND token = ?", (message_id, token)
            ).rowcount
        return deleted > 0

    def requeue(self, message_id: str, token: str, available_at: float) -> None:
        """Make the message available again at ``available_at``, at the back of its queue."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET consumer = NULL, token = NULL, available_at = ?,"
                " position = ? WHERE id = ? AND token = ?",
                (available_at, self._next_position(db), message_id, token),
            )

    def replace(
        self,
        message_id: str,
        token: str,
        queue: str,
        body: bytes,
        headers: Mapping[str, str],
        available_at: float,
    ) -> None:
        """Atomically publish a replacement and delete the held message."""
        with self._tx() as db:
            gone = db.execute(
                "DELETE FROM messages WHERE id = ? AND token = ?", (message_id, token)
            ).rowcount
            if gone:
                db.execute(
                    "INSERT INTO messages (id, queue, position, body, headers, available_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        uuid.uuid4().hex,
                        queue,
                        self._next_position(db),
                        body,
                        json.dumps(dict(headers)),
                        available_at,
                    ),
                )

    def extend(self, message_id: str, token: str, until: float) -> None:
        """Move the lease deadline of a held message to ``until``."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET available_at = ? WHERE id = ? AND token = ?",
                (until, message_id, token),
            )

    def dead_letter(self, held: Claimed, reason: str, now: float, *, copy: bool) -> None:
        """Move the held message to the dead letters (or record a ``copy`` of it)."""
        with self._tx() as db:
            if not copy:
                gone = db.execute(
                    "DELETE FROM messages WHERE id = ? AND token = ?", (held.id, held.token)
                ).rowcount
                if not gone:
                    return
            self._bury(
                db,
                held.id,
                held.queue,
                held.body,
                json.dumps(dict(held.headers)),
                reason,
                held.delivery_count,
                now,
            )

    @staticmethod
    def _bury(
        db: sqlite3.Connection,
        message_id: str,
        queue: str,
        body: bytes,
        headers: str,
        reason: str,
        count: int,
        now: float,
    ) -> None:
        db.execute(
            "INSERT INTO dead_letters (id, queue, body, headers, reason, delivery_count, dead_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f"{message_id}-{uuid.uuid4().hex[:8]}", queue, body, headers, reason, count, now),
        )

    # -- inspection and dead letters ----------------------------------------------------------

    def counts(self, queue: str, now: float) -> QueueCounts:
        """Ready, in-flight, delayed and dead counts of ``queue`` at ``now``."""
        ready, in_flight, delayed = self._db.execute(
            "SELECT"
            " COALESCE(SUM(available_at <= ?), 0),"
            " COALESCE(SUM(consumer IS NOT NULL AND available_at > ?), 0),"
            " COALESCE(SUM(consumer IS NULL AND available_at > ?), 0)"
            " FROM messages WHERE queue = ?",
            (now, now, now, queue),
        ).fetchone()
        dead = self._db.execute(
            "SELECT COUNT(*) FROM dead_letters WHERE queue = ?", (queue,)
        ).fetchone()[0]
        return QueueCounts(ready=ready, in_flight=in_flight, delayed=delayed, dead=dead)

    def dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead letters of ``queue``, oldest first."""
        rows = self._db.execute(
            "SELECT id, body, headers, reason, delivery_count, dead_at FROM dead_letters"
            " WHERE queue = ? ORDER BY seq LIMIT ?",
            (queue, max(0, limit)),
        ).fetchall()
        return [
            DeadLetter(
                id=dl_id,
                queue=queue,
                body=bytes(body),
                headers=json.loads(headers),
                reason=reason,
                delivery_count=count,
                dead_at=datetime.fromtimestamp(dead_at, UTC),
            )
            for dl_id, body, headers, reason, count, dead_at in rows
        ]

    def replay(self, queue: str, dead_letter_id: str, now: float) -> bool:
        """Move a dead letter back to its queue as a ready message; False if unknown."""
        with self._tx() as db:
            row = db.execute(
                "SELECT body, headers FROM dead_letters WHERE queue = ? AND id = ?",
                (queue, dead_letter_id),
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM dead_letters WHERE id = ?", (dead_letter_id,))
            db.execute(
                "INSERT INTO messages (id, queue, position, body, headers, available_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, queue, self._next_position(db), row[0], row[1], now),
            )
        return True

    def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter; False if unknown."""
        with self._tx() as db:
            return bool(
                db.execute(
                    "DELETE FROM dead_letters WHERE queue = ? AND id = ?", (queue, dead_letter_id)
                ).rowcount
            )

    def delete_queue(self, queue: str) -> None:
        """Delete every message and dead letter of ``queue``."""
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE queue = ?", (queue,))
            db.execute("DELETE FROM dead_letters WHERE queue = ?", (queue,))

    def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""
        with self._tx() as db:
            return int(db.execute("DELETE FROM dead_letters WHERE queue = ?", (queue,)).rowcount)
