"""The PostgreSQL broker's side of the ``unique_enqueue`` capability (:mod:`chicory.unique`).

A claim is a row of ``unique_claims`` (queue, key, holder, the time it lasts at least, the
time it ends; the server's clock). One statement claims the key and inserts the message: an
``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the old claim ended takes the key (the
primary key makes concurrent claimers of one key wait for each other, and only one gets
it), and the message is inserted only from the row that claim returned. So the claim and
the publish commit together, or neither happens.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final

import orjson

from chicory.broker import OutgoingMessage
from chicory.unique import UniqueClaim, check_claim

if TYPE_CHECKING:
    from chicory_postgres.broker import PostgresBroker

__all__ = ["holder", "publish_unique", "release_unique"]

PUBLISH_UNIQUE: Final = """
WITH claim AS (
    INSERT INTO {s}.unique_claims AS c (queue, key, holder, keep_until, expires_at)
    VALUES (%(queue)s, %(key)s, %(holder)s,
            statement_timestamp() + make_interval(secs => %(keep)s),
            statement_timestamp() + make_interval(secs => %(hold)s))
    ON CONFLICT (queue, key) DO UPDATE
        SET holder = excluded.holder, keep_until = excluded.keep_until,
            expires_at = excluded.expires_at
        WHERE c.expires_at <= statement_timestamp()
    RETURNING c.holder
), ins AS (
    INSERT INTO {s}.messages (id, queue, body, headers, run_at)
    SELECT %(id)s::uuid, %(queue)s, %(body)s, %(headers)s::jsonb,
           coalesce(%(run_at)s::timestamptz, statement_timestamp())
    FROM claim
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins), {notify}
"""
"""Claim a free (or ended) key and insert the message, or neither; one statement."""

HOLDER: Final = """
SELECT holder FROM {s}.unique_claims
WHERE queue = %(queue)s AND key = %(key)s AND expires_at > statement_timestamp()
"""

RELEASE: Final = """
WITH mine AS (
    SELECT queue, key, keep_until FROM {s}.unique_claims
    WHERE queue = %(queue)s AND key = %(key)s AND holder = %(holder)s
      AND expires_at > statement_timestamp()
    FOR UPDATE
), kept AS (
    UPDATE {s}.unique_claims c SET expires_at = m.keep_until FROM mine m
    WHERE c.queue = m.queue AND c.key = m.key AND m.keep_until > statement_timestamp()
    RETURNING 1
), freed AS (
    DELETE FROM {s}.unique_claims c USING mine m
    WHERE c.queue = m.queue AND c.key = m.key AND m.keep_until <= statement_timestamp()
    RETURNING 1
)
SELECT (SELECT count(*) FROM kept) + (SELECT count(*) FROM freed)
"""


async def publish_unique(
    broker: PostgresBroker,
    queue: str,
    message: OutgoingMessage,
    *,
    key: str,
    holder: str,
    hold: float,
    keep: float,
) -> UniqueClaim:
    """Claim ``key`` and publish ``message`` in one statement, or neither.

    Raises:
        ValueError: ``hold``/``keep`` out of range, or ``not_before`` is naive.
        MessageTooLargeError: the body exceeds ``max_body_bytes``.
        BrokerConnectionError: PostgreSQL could not be reached.
    """
    check_claim(hold, keep)
    broker.check_body(message.body)
    due = message.not_before
    if due is not None and due.tzinfo is None:
        raise ValueError(f"not_before must be an aware datetime (UTC), got the naive {due!r}")
    await broker.register_queues([queue])
    message_id = uuid.uuid4()
    params: dict[str, Any] = {
        "queue": queue,
        "key": key,
        "holder": holder,
        "keep": keep,
        "hold": hold,
        "id": message_id,
        "body": message.body,
        "headers": orjson.dumps(dict(message.headers)).decode() if message.headers else "{}",
        "run_at": due,
        "channel": broker.wake_channel,
    }
    statement = broker.sql.fill(PUBLISH_UNIQUE.replace("{notify}", broker.sql.notify))
    while True:
        rows = await broker.fetch_rows(statement, params, doing="publishing a unique message")
        if rows and rows[0][0]:
            broker.wake_local(queue)
            return UniqueClaim(message_id=str(message_id), holder=holder)
        current = await _holder(broker, queue, key)
        if current is not None:
            return UniqueClaim(message_id=None, holder=current)
        # The claim that stopped this one ended before it could be read: try again.


async def _holder(broker: PostgresBroker, queue: str, key: str) -> str | None:
    rows = await broker.fetch_rows(
        broker.sql.fill(HOLDER), {"queue": queue, "key": key}, doing="reading a unique key"
    )
    return str(rows[0][0]) if rows else None


async def holder(broker: PostgresBroker, queue: str, key: str) -> str | None:
    """Who holds ``key`` in ``queue`` now, or ``None``."""
    return await _holder(broker, queue, key)


async def release_unique(broker: PostgresBroker, queue: str, key: str, who: str) -> bool:
    """End ``who``'s claim on ``key`` (now, or at its keep time); False if not its."""
    rows = await broker.fetch_rows(
        broker.sql.fill(RELEASE),
        {"queue": queue, "key": key, "holder": who},
        doing="releasing a unique key",
    )
    return bool(rows and rows[0][0])
