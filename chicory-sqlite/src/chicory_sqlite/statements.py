"""The broker's hot-path statements: publish, claim, settle, renew. Synchronous, run on the
connection's thread (:mod:`chicory_sqlite.database`); each function body is one transaction.

What each guarantee costs, in statements per transaction (``n`` messages in the batch):

* publish of ``n`` messages: ``1 + n`` (register the queue; one insert each);
* a claim of up to ``n``: one indexed ``SELECT ... LIMIT n`` and ``n`` updates by primary key
  (plus an insert and a delete per message over ``max_deliveries``), and one probe per
  queue for its highest priority: with messages above priority 0, one more indexed
  ``SELECT`` per priority present, highest first, until ``n`` are found;
* an ack of ``n`` (``ack_many``): ``n`` deletes by ``(id, token)``: a delete that matches
  nothing is how a lost lease shows;
* a renewal of ``n`` leases: ``n`` updates by ``(id, token)``;
* a retry: a delete by ``(id, token)`` and, if it matched, an insert (atomic retry);
* a dead letter: a delete by ``(id, token)`` and, if it matched, an insert into the dead
  letters (plus one delete trimming the queue's dead letters to the limits).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence

import attrs

from chicory.priority import PRIORITY_HEADER, priority_of

__all__ = ["Claimed", "QueueStatements", "header_priority", "trim_dead_letters"]

_TOP_PRIORITY = (
    "SELECT priority FROM chicory_messages INDEXED BY chicory_messages_ranked"
    " WHERE queue = ? AND priority <> 0 ORDER BY priority DESC LIMIT 1"
)


def header_priority(headers: str) -> int:
    """The priority of a message with these headers (JSON text), as
    :func:`chicory.priority.priority_of` reads it: 0 without a ``chicory-priority``
    header."""
    if PRIORITY_HEADER not in headers:
        return 0
    return priority_of(json.loads(headers).items())


@attrs.frozen(kw_only=True)
class Claimed:
    """A message handed to a consumer by :meth:`QueueStatements.claim`."""

    id: str
    queue: str
    body: bytes
    headers: Mapping[str, str]
    delivery_count: int
    token: str
    lease_until: float


@attrs.frozen(kw_only=True)
class QueueStatements:
    """The broker's settings the statements need.

    Attributes:
        lease_seconds: Lease of a claimed message.
        max_deliveries: Dead-letter instead of delivering a message a ``max + 1``-th time.
        dead_letter_max_count: Dead letters kept per queue, or ``None``.
        dead_letter_max_age: Seconds a dead letter is kept, or ``None``.
    """

    lease_seconds: float
    max_deliveries: int | None
    dead_letter_max_count: int | None
    dead_letter_max_age: float | None

    # -- publishing --------------------------------------------------------------------------

    def publish(
        self,
        conn: sqlite3.Connection,
        queue: str,
        items: Sequence[tuple[bytes, str, float | None]],
    ) -> list[str]:
        """Insert ``(body, headers_json, not_before)`` messages; return their ids in order.

        A message is available from ``not_before`` or now, whichever is later: an overdue
        ``not_before`` does not jump ahead of messages ready already.
        """
        now = time.time()
        conn.execute("INSERT OR IGNORE INTO chicory_queues (name) VALUES (?)", (queue,))
        ids: list[str] = []
        insert = (
            "INSERT INTO chicory_messages (queue, body, headers, available_at, priority)"
            " VALUES (?, ?, ?, ?, ?)"
        )
        for body, headers, not_before in items:
            due = now if not_before is None or not_before < now else not_before
            row = (queue, body, headers, due, header_priority(headers))
            ids.append(str(conn.execute(insert, row).lastrowid))
        return ids

    # -- consuming ---------------------------------------------------------------------------

    @staticmethod
    def has_ready(conn: sqlite3.Connection, queues: Sequence[str]) -> bool:
        """Whether any of ``queues`` has a ready message (a read: no lock taken)."""
        marks = ",".join("?" * len(queues))
        row = conn.execute(
            f"SELECT 1 FROM chicory_messages WHERE queue IN ({marks}) AND available_at <= ?"
            " LIMIT 1",
            (*queues, time.time()),
        ).fetchone()
        return row is not None

    def claim(
        self, conn: sqlite3.Connection, queues: Sequence[str], room: int, token: str
    ) -> list[Claimed]:
        """Lease up to ``room`` ready messages of ``queues`` under ``token``, highest
        priority first, then oldest ready first; bury those delivered ``max_deliveries``
        times already."""
        now = time.time()
        until = now + self.lease_seconds
        claimed: list[Claimed] = []
        update = (
            "UPDATE chicory_messages SET token = ?, available_at = ?,"
            " delivery_count = delivery_count + 1 WHERE id = ?"
        )
        while room > 0:
            rows = self.ready(conn, queues, now, room)
            buried = 0
            updates: list[tuple[str, float, int]] = []
            for message_id, queue, body, headers, count in rows:
                if self.max_deliveries is not None and count >= self.max_deliveries:
                    reason = (
                        f"delivered {count} times without being settled "
                        f"(max_deliveries={self.max_deliveries})"
                    )
                    conn.execute("DELETE FROM chicory_messages WHERE id = ?", (message_id,))
                    self.bury(conn, str(message_id), queue, body, headers, reason, count, now)
                    buried += 1
                    continue
                updates.append((token, until, message_id))
                claimed.append(
                    Claimed(
                        id=str(message_id),
                        queue=queue,
                        body=body,
                        headers=json.loads(headers),
                        delivery_count=count + 1,
                        token=token,
                        lease_until=until,
                    )
                )
                room -= 1
            conn.executemany(update, updates)
            if not buried:
                break  # every ready message fitted, or the room is full
        return claimed

    @staticmethod
    def ready(
        conn: sqlite3.Connection, queues: Sequence[str], now: float, room: int
    ) -> list[tuple[int, str, bytes, str, int]]:
        """Up to ``room`` ready messages of ``queues`` (id, queue, body, headers, delivery
        count): highest priority first, then in the order they became ready.

        Priority 0 is one range scan of ``chicory_messages_due``; each priority above it,
        from the highest any of ``queues`` holds, one range scan of
        ``chicory_messages_ranked``, so delayed and held messages of a priority are never
        read. A queue without priorities costs one probe of an empty index."""
        marks = ",".join("?" * len(queues))
        columns = "SELECT id, queue, body, headers, delivery_count FROM chicory_messages"
        tops = (conn.execute(_TOP_PRIORITY, (q,)).fetchone() for q in queues)
        top = max((row[0] for row in tops if row is not None), default=0)
        rows: list[tuple[int, str, bytes, str, int]] = []
        for level in range(top, 0, -1):
            rows += conn.execute(
                f"{columns} INDEXED BY chicory_messages_ranked"
                f" WHERE queue IN ({marks}) AND priority = ? AND priority <> 0"
                " AND available_at <= ? ORDER BY available_at, id LIMIT ?",
                (*queues, level, now, room - len(rows)),
            ).fetchall()
            if len(rows) >= room:
                return rows
        rows += conn.execute(
            f"{columns} INDEXED BY chicory_messages_due"
            f" WHERE queue IN ({marks}) AND available_at <= ? AND priority = 0"
            " ORDER BY available_at, id LIMIT ?",
            (*queues, now, room - len(rows)),
        ).fetchall()
        return rows

    @staticmethod
    def next_due(conn: sqlite3.Connection, queues: Sequence[str]) -> float | None:
        """The next time a message of ``queues`` becomes ready (a delay ends or a lease
        lapses), or ``None``."""
        due: float | None = None
        for queue in queues:
            row = conn.execute(
                "SELECT MIN(available_at) FROM chicory_messages WHERE queue = ?"
                " AND available_at > ?",
                (queue, time.time()),
            ).fetchone()
            if row[0] is not None and (due is None or row[0] < due):
                due = row[0]
        return due

    # -- settling (each applies only while ``token`` still holds the message) -----------------

    @staticmethod
    def ack(conn: sqlite3.Connection, held: Sequence[tuple[str, str]]) -> list[int]:
        """Delete each ``(id, token)``; return the positions of those no longer held."""
        lost = []
        for position, (message_id, token) in enumerate(held):
            cursor = conn.execute(
                "DELETE FROM chicory_messages WHERE id = ? AND token = ?", (message_id, token)
            )
            if cursor.rowcount == 0:
                lost.append(position)
        return lost

    def extend(
        self, conn: sqlite3.Connection, held: Sequence[tuple[str, str]], seconds: float | None
    ) -> float:
        """Move the lease end of each held ``(id, token)`` to ``seconds`` from now (at most
        the broker's lease); return the new end."""
        lease = self.lease_seconds if seconds is None else min(seconds, self.lease_seconds)
        until = time.time() + max(lease, 0.0)
        conn.executemany(
            "UPDATE chicory_messages SET available_at = ? WHERE id = ? AND token = ?",
            [(until, message_id, token) for message_id, token in held],
        )
        return until

    @staticmethod
    def release(
        conn: sqlite3.Connection, held: Sequence[tuple[str, str]], delay: float = 0.0
    ) -> None:
        """Give each held ``(id, token)`` back: ready (after ``delay`` s), at the back."""
        available_at = time.time() + delay
        conn.executemany(
            "UPDATE chicory_messages SET token = NULL, available_at = ? WHERE id = ? AND token = ?",
            [(available_at, message_id, token) for message_id, token in held],
        )

    @staticmethod
    def replace(
        conn: sqlite3.Connection,
        held: tuple[str, str],
        queue: str,
        body: bytes,
        headers: str,
        not_before: float | None,
    ) -> None:
        """Delete the held message and publish its replacement, both or neither."""
        gone = conn.execute(
            "DELETE FROM chicory_messages WHERE id = ? AND token = ?", held
        ).rowcount
        if gone:
            now = time.time()
            due = now if not_before is None or not_before < now else not_before
            conn.execute(
                "INSERT INTO chicory_messages (queue, body, headers, available_at, priority)"
                " VALUES (?, ?, ?, ?, ?)",
                (queue, body, headers, due, header_priority(headers)),
            )

    def dead_letter(
        self,
        conn: sqlite3.Connection,
        held: Claimed,
        reason: str,
        *,
        copy: bool,
    ) -> None:
        """Move the held message to its queue's dead letters (``copy``: record a copy of a
        message acked already)."""
        if not copy:
            gone = conn.execute(
                "DELETE FROM chicory_messages WHERE id = ? AND token = ?", (held.id, held.token)
            ).rowcount
            if not gone:
                return
        self.bury(
            conn,
            held.id,
            held.queue,
            held.body,
            json.dumps(dict(held.headers)),
            reason,
            held.delivery_count,
            time.time(),
        )

    def bury(
        self,
        conn: sqlite3.Connection,
        message_id: str,
        queue: str,
        body: bytes,
        headers: str,
        reason: str,
        count: int,
        now: float,
    ) -> None:
        """Insert one dead letter, then trim the queue's dead letters to the limits."""
        conn.execute(
            "INSERT INTO chicory_dead_letters (queue, message_id, body, headers, reason,"
            " delivery_count, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (queue, message_id, body, headers, reason, count, int(now * 1_000_000)),
        )
        trim_dead_letters(conn, queue, now, self.dead_letter_max_count, self.dead_letter_max_age)


def trim_dead_letters(
    conn: sqlite3.Connection,
    queue: str,
    now: float,
    max_count: int | None,
    max_age: float | None,
) -> None:
    """Drop the dead letters of ``queue`` over the limits, oldest first (index range
    deletes: the cost does not grow with the number kept)."""
    if max_age is not None:
        conn.execute(
            "DELETE FROM chicory_dead_letters WHERE queue = ? AND dead_at < ?",
            (queue, int((now - max_age) * 1_000_000)),
        )
    if max_count is not None:
        conn.execute(
            "DELETE FROM chicory_dead_letters WHERE queue = ? AND id <= (SELECT id FROM"
            " chicory_dead_letters WHERE queue = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (queue, queue, max_count),
        )
