"""Every SQL statement of the broker, one per guarantee, each a single atomic statement.

``{s}`` stands for the schema (a validated name, quoted); ``%(name)s`` are parameters. Times
are the server's: ``statement_timestamp()`` is one instant per statement, so a lease is
never judged by a worker's clock. What each guarantee costs is in ``docs/postgres.md``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["TTL", "Statements"]

_LEASE = "statement_timestamp() + %(lease)s * interval '1 second'"

TTL: Final = "statement_timestamp() + %(ttl)s * interval '1 second'"
"""When a row written now with a lifetime of ``%(ttl)s`` seconds expires (the server's clock)."""

PUBLISH: Final = """
WITH ins AS (
    INSERT INTO {s}.messages (id, queue, body, headers, run_at, priority)
    SELECT t.id, %(queue)s, t.body, t.headers, coalesce(t.run_at, statement_timestamp()),
           t.priority
    FROM unnest(%(ids)s::uuid[], %(bodies)s::bytea[], %(headers)s::bytea[],
                %(run_at)s::timestamptz[], %(priorities)s::smallint[])
         WITH ORDINALITY AS t(id, body, headers, run_at, priority, n)
    ORDER BY t.n
    RETURNING 1
)
SELECT count(*), {notify} FROM ins
"""
"""Enqueue a batch (ids made by the caller) and wake consumers, in one statement."""

_CLAIMED = (
    """
picked AS (
    SELECT id, delivery_count FROM expired
    UNION ALL
    SELECT id, delivery_count FROM ready
    LIMIT %(limit)s
),
buried AS (
    DELETE FROM {s}.messages m USING picked p
    WHERE m.id = p.id AND p.delivery_count >= %(max_deliveries)s
    RETURNING m.id, m.queue, m.body, m.headers, m.delivery_count
),
dead AS (
    INSERT INTO {s}.dead_letters (queue, message_id, body, headers, reason, delivery_count)
    SELECT queue, id, body, headers,
           format('delivered %%s times without being settled (max_deliveries=%%s)',
                  delivery_count, %(max_deliveries)s),
           delivery_count
    FROM buried
)
UPDATE {s}.messages m
SET locked_until = """
    + _LEASE
    + """, token = gen_random_uuid(),
    delivery_count = m.delivery_count + 1
FROM picked p
WHERE m.id = p.id AND p.delivery_count < coalesce(%(max_deliveries)s, 2147483647)
RETURNING m.id, m.queue, m.body, m.headers, m.delivery_count, m.token, m.run_at, m.seq,
          m.priority
"""
)

_EXPIRED = """
expired AS (
    SELECT id, delivery_count FROM {s}.messages
    WHERE queue = ANY(%(queues)s) AND locked_until <= statement_timestamp()
    ORDER BY locked_until LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)"""

_READY_ONE = """
ranked{i} AS (
    SELECT m.id, m.delivery_count, m.priority, m.run_at, m.seq
    FROM unnest('{9,8,7,6,5,4,3,2,1}'::smallint[]) AS l(level)
    CROSS JOIN LATERAL (
        SELECT id, delivery_count, priority, run_at, seq FROM {s}.messages
        WHERE queue = %(q{i})s AND priority = l.level AND priority > 0
          AND locked_until IS NULL AND run_at <= statement_timestamp()
        ORDER BY run_at, seq LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) m
    WHERE l.level <= (SELECT max(priority) FROM {s}.messages
                      WHERE queue = %(q{i})s AND priority > 0 AND locked_until IS NULL)
    LIMIT %(limit)s
),
ready{i} AS (
    SELECT id, delivery_count, priority, run_at, seq FROM {s}.messages
    WHERE queue = %(q{i})s AND priority = 0
      AND locked_until IS NULL AND run_at <= statement_timestamp()
    ORDER BY run_at, seq LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)"""


def claim_statement(queue_count: int) -> str:
    """The claim of up to ``%(limit)s`` messages from ``queue_count`` queues.

    Expired leases first (their messages were ready before any other), then the ready
    messages of each queue, highest priority first, in the order they became ready
    (``run_at``, then publish order) within a priority; each row locked with ``SKIP
    LOCKED`` so concurrent claims never wait for each other; a message delivered
    ``max_deliveries`` times already is dead-lettered instead.

    Priority 0 (every message without a priority) is one range scan of ``messages_ready``,
    as before priorities existed. Above 0, each priority present is one range scan of
    ``messages_ranked`` (up to nine, highest first, stopping once ``limit`` are found), and
    only from the highest priority among the queue's unleased messages: a queue without
    priorities pays one probe of an empty index. Scanning level by level keeps each scan a
    bounded range, however many delayed messages a priority holds.
    """
    each = ",\n".join(_READY_ONE.replace("{i}", str(i)) for i in range(queue_count))
    union = " UNION ALL ".join(
        f"SELECT * FROM ranked{i} UNION ALL SELECT * FROM ready{i}" for i in range(queue_count)
    )
    ready = (
        f"ready AS (SELECT id, delivery_count FROM ({union}) r "
        "ORDER BY priority DESC, run_at, seq LIMIT %(limit)s)"
    )
    return "WITH " + _EXPIRED + ",\n" + each + ",\n" + ready + ",\n" + _CLAIMED


ACK: Final = """
DELETE FROM {s}.messages WHERE id = ANY(%(ids)s) AND token = ANY(%(tokens)s) RETURNING id
"""
"""Settle a batch: delete what the tokens still hold; the ids not returned lost their lease."""

RENEW: Final = (
    "UPDATE {s}.messages SET locked_until = "
    + _LEASE
    + " WHERE id = ANY(%(ids)s) AND token = ANY(%(tokens)s)"
)
"""Renew a batch of leases: a full lease from now, only where the token still holds."""

RELEASE: Final = """
UPDATE {s}.messages SET locked_until = NULL, token = NULL
WHERE id = ANY(%(ids)s) AND token = ANY(%(tokens)s)
"""
"""Hand held messages back, ready at once in their original place (closing a consumer)."""

REQUEUE: Final = """
UPDATE {s}.messages
SET locked_until = NULL, token = NULL,
    run_at = statement_timestamp() + %(delay)s * interval '1 second',
    seq = DEFAULT
WHERE id = %(id)s AND token = %(token)s
"""
"""Nack with requeue: back of the queue (a new ``seq``), after ``delay`` seconds."""

RETRY: Final = """
WITH gone AS (
    DELETE FROM {s}.messages WHERE id = %(id)s AND token = %(token)s RETURNING queue
)
INSERT INTO {s}.messages (id, queue, body, headers, run_at, priority)
SELECT %(new_id)s, gone.queue, %(body)s, %(headers)s,
       coalesce(%(run_at)s, statement_timestamp()), %(priority)s
FROM gone
"""
"""Atomic retry: the replacement exists if and only if the held message was removed."""

DEAD_LETTER: Final = """
WITH gone AS (
    DELETE FROM {s}.messages WHERE id = %(id)s AND token = %(token)s
    RETURNING id, queue, body, headers, delivery_count
)
INSERT INTO {s}.dead_letters (queue, message_id, body, headers, reason, delivery_count)
SELECT queue, id, body, headers, %(reason)s, delivery_count FROM gone
"""
"""Atomic dead-letter: moved out of ``messages`` and into ``dead_letters`` in one step."""

DEAD_LETTER_COPY: Final = """
INSERT INTO {s}.dead_letters (queue, message_id, body, headers, reason, delivery_count)
VALUES (%(queue)s, %(id)s, %(body)s, %(headers)s, %(reason)s, %(count)s)
"""
"""Record a copy of a message acked already (at-most-once work that failed)."""

NEXT_DUE: Final = """
SELECT least(
    (SELECT min(run_at) FROM {s}.messages
     WHERE queue = ANY(%(queues)s) AND locked_until IS NULL
       AND run_at > statement_timestamp()),
    (SELECT min(locked_until) FROM {s}.messages
     WHERE queue = ANY(%(queues)s) AND locked_until IS NOT NULL)
) - statement_timestamp()
"""
"""How long until a delay ends or a lease runs out in the queues (``NULL``: nothing due)."""

COUNTS: Final = """
SELECT q.name,
    (SELECT count(*) FROM {s}.messages m
     WHERE m.queue = q.name AND m.locked_until IS NULL
       AND m.run_at <= statement_timestamp())
  + (SELECT count(*) FROM {s}.messages m
     WHERE m.queue = q.name AND m.locked_until <= statement_timestamp()),
    (SELECT count(*) FROM {s}.messages m
     WHERE m.queue = q.name AND m.locked_until > statement_timestamp()),
    (SELECT count(*) FROM {s}.messages m
     WHERE m.queue = q.name AND m.locked_until IS NULL AND m.run_at > statement_timestamp()),
    (SELECT least(count(*), %(dead_max_count)s) FROM {s}.dead_letters d
     WHERE d.queue = q.name
       AND (%(dead_max_age)s::float8 IS NULL
            OR d.dead_at >= statement_timestamp() - %(dead_max_age)s * interval '1 second')),
    (SELECT min(coalesce(m.locked_until, m.run_at)) FROM {s}.messages m
     WHERE m.queue = q.name AND (m.locked_until IS NULL OR m.locked_until <= statement_timestamp())
       AND m.run_at <= statement_timestamp()),
    (SELECT count(*) FROM {s}.consumers c
     WHERE c.queue = q.name AND c.seen_until > statement_timestamp())
FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q(name, n)
ORDER BY q.n
"""
"""Ready, in flight, delayed, dead (within the dead-letter limits: rows over them may not be
deleted yet), the oldest ready time and the live consumers of each queue, in one query."""

PRESENT: Final = """
INSERT INTO {s}.consumers (queue, consumer_id, seen_until)
SELECT q, %(consumer)s, statement_timestamp() + %(ttl)s * interval '1 second'
FROM unnest(%(queues)s::text[]) AS q
ON CONFLICT (queue, consumer_id) DO UPDATE SET seen_until = EXCLUDED.seen_until
"""
"""Record (or renew) a consumer's presence on its queues."""

ABSENT: Final = """
DELETE FROM {s}.consumers
WHERE consumer_id = %(consumer)s OR seen_until < statement_timestamp() - interval '1 hour'
"""
"""Remove a closing consumer's presence (and presences abandoned long ago)."""

REGISTER_QUEUE: Final = "INSERT INTO {s}.queues (name) VALUES (%(queue)s) ON CONFLICT DO NOTHING"

TRIM_DEAD_AGE: Final = """
DELETE FROM {s}.dead_letters
WHERE queue = %(queue)s AND dead_at < statement_timestamp() - %(age)s * interval '1 second'
"""

TRIM_DEAD_COUNT: Final = """
DELETE FROM {s}.dead_letters
WHERE queue = %(queue)s AND id <= (
    SELECT id FROM {s}.dead_letters WHERE queue = %(queue)s
    ORDER BY id DESC OFFSET %(keep)s LIMIT 1
)
"""


class Statements:
    """The statements with the schema filled in (built once per broker).

    Args:
        schema: A validated schema name.
        wake_channel: The NOTIFY channel consumers listen on, or ``None`` not to notify.
    """

    def __init__(self, schema: str, wake_channel: str | None) -> None:
        self.schema = f'"{schema}"'
        notify = "pg_notify(%(channel)s, %(queue)s)" if wake_channel else "NULL"
        self.publish = self.fill(PUBLISH.replace("{notify}", notify))
        self.ack = self.fill(ACK)
        self.renew = self.fill(RENEW)
        self.release = self.fill(RELEASE)
        self.requeue = self.fill(REQUEUE)
        self.retry = self.fill(RETRY)
        self.dead_letter = self.fill(DEAD_LETTER)
        self.dead_letter_copy = self.fill(DEAD_LETTER_COPY)
        self.next_due = self.fill(NEXT_DUE)
        self.counts = self.fill(COUNTS)
        self.register_queue = self.fill(REGISTER_QUEUE)
        self.present = self.fill(PRESENT)
        self.absent = self.fill(ABSENT)
        self.trim_dead_age = self.fill(TRIM_DEAD_AGE)
        self.trim_dead_count = self.fill(TRIM_DEAD_COUNT)
        self._claims: dict[int, str] = {}

    def fill(self, text: str) -> str:
        """``text`` with ``{s}`` replaced by the quoted schema."""
        return text.replace("{s}", self.schema)

    def claim(self, queue_count: int) -> str:
        """The claim statement for ``queue_count`` queues (see :func:`claim_statement`)."""
        statement = self._claims.get(queue_count)
        if statement is None:
            statement = self._claims[queue_count] = self.fill(claim_statement(queue_count))
        return statement
