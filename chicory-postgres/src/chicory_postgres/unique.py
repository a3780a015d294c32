"""Unique enqueue (``Capabilities.unique_enqueue``): one statement claims a key and publishes.

A key is a row of ``unique_keys`` per ``(queue, key)``. Claiming is an upsert that only
overwrites a row whose hold ran out, in the same statement as the message's insert (which
reads from the claim, so it happens if and only if the key was claimed). Concurrent callers
conflict on the primary key: PostgreSQL makes the second wait for the first and then sees
its row, so a key is claimed once.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson

from chicory.broker import OutgoingMessage
from chicory.priority import priority_of
from chicory.unique import UniqueClaim, check_claim
from chicory_postgres.within import caller_connection

if TYPE_CHECKING:
    from chicory_postgres.base import PostgresBrokerBase

__all__ = ["publish_unique", "release_unique", "unique_holder"]

_PUBLISH_UNIQUE = """
WITH claim AS (
    INSERT INTO {s}.unique_keys AS u (queue, key, holder, held_until, keep_until)
    VALUES (%(queue)s, %(key)s, %(holder)s,
            statement_timestamp() + %(hold)s * interval '1 second',
            statement_timestamp() + %(keep)s * interval '1 second')
    ON CONFLICT (queue, key) DO UPDATE
    SET holder = EXCLUDED.holder, held_until = EXCLUDED.held_until,
        keep_until = EXCLUDED.keep_until
    WHERE u.held_until <= statement_timestamp()
    RETURNING 1
), ins AS (
    INSERT INTO {s}.messages (id, queue, body, headers, run_at, priority)
    SELECT %(id)s, %(queue)s, %(body)s, %(headers)s,
           coalesce(%(run_at)s, statement_timestamp()), %(priority)s
    FROM claim
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins),
       (SELECT holder FROM {s}.unique_keys
        WHERE queue = %(queue)s AND key = %(key)s AND held_until > statement_timestamp()),
       (SELECT {notify} FROM ins LIMIT 1)
"""

_RELEASE = """
UPDATE {s}.unique_keys
SET held_until = least(held_until, greatest(statement_timestamp(), keep_until))
WHERE queue = %(queue)s AND key = %(key)s AND holder = %(holder)s
  AND held_until > statement_timestamp()
"""

_HOLDER = """
SELECT holder FROM {s}.unique_keys
WHERE queue = %(queue)s AND key = %(key)s AND held_until > statement_timestamp()
"""


async def publish_unique(
    broker: PostgresBrokerBase,
    queue: str,
    message: OutgoingMessage,
    *,
    key: str,
    holder: str,
    hold: float,
    keep: float,
    within: object | None = None,
) -> UniqueClaim:
    """Publish ``message`` unless ``key`` is held in ``queue`` (one statement).

    With ``within`` (the caller's connection, see :mod:`chicory_postgres.within`) the
    statement runs inside that connection's open transaction: the claim and the message are
    kept if it commits, and both are gone if it rolls back.

    Raises:
        CapabilityError: ``within`` is not a connection the broker can publish on.
        ValueError: ``hold``/``keep`` out of range or a naive ``not_before``.
        MessageTooLargeError: the body is over ``max_body_bytes``.
    """
    check_claim(hold, keep)
    broker.check_body(message.body)
    due = message.not_before
    if due is not None and due.tzinfo is None:
        raise ValueError(f"not_before must be an aware datetime (UTC), got the naive {due!r}")
    await broker.register_queues([queue])
    channel = broker.settings.channel("wake") if broker.settings.notify else None
    notify = "pg_notify(%(channel)s, %(queue)s)" if channel else "NULL"
    message_id = uuid.uuid4()
    params: dict[str, Any] = {
        "queue": queue,
        "key": key,
        "holder": holder,
        "hold": hold,
        "keep": keep,
        "id": message_id,
        "body": message.body,
        "headers": orjson.dumps(dict(message.headers)),
        "run_at": due,
        "priority": priority_of(message.headers.items()),
        "channel": channel,
    }
    statement = broker.sql.fill(_PUBLISH_UNIQUE.replace("{notify}", notify))
    if within is not None:
        rows = await (await caller_connection(within)).fetch(statement, params)
    else:
        rows = await broker.fetch_rows(statement, params, doing="publishing a unique message")
    published, current = (rows[0][0], rows[0][1]) if rows else (0, None)
    if published:
        if within is None:  # in a transaction, the NOTIFY wakes consumers at its commit
            broker.wake_local(queue)
        return UniqueClaim(message_id=str(message_id), holder=holder)
    if current is None:  # claimed by a transaction that committed after this one began
        current = await unique_holder(broker, queue, key)
    return UniqueClaim(message_id=None, holder=current if current is not None else holder)


async def release_unique(broker: PostgresBrokerBase, queue: str, key: str, holder: str) -> bool:
    """End ``holder``'s claim on ``key`` (now, or when its keep time ends)."""
    changed = await broker.execute(
        broker.sql.fill(_RELEASE),
        {"queue": queue, "key": key, "holder": holder},
        doing="releasing a unique key",
    )
    return changed > 0


async def unique_holder(broker: PostgresBrokerBase, queue: str, key: str) -> str | None:
    """Who holds ``key`` in ``queue`` now, or ``None``."""
    rows = await broker.fetch_rows(
        broker.sql.fill(_HOLDER), {"queue": queue, "key": key}, doing="reading a unique key"
    )
    return str(rows[0][0]) if rows else None
