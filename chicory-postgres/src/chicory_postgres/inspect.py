"""Operators' reads and repairs: queue stats, dead letters by page, delayed messages.

Dead letters are rows of ``dead_letters``: a page is an index range scan on ``(queue, id)``
from just past the cursor (the last id of the previous page), so a page costs the same with
100 or 1,000,000 letters. The dead-letter limits (count and age) are applied before every
read, so what is listed and counted is always within them. Delayed messages are the rows of
``messages`` not leased and not due yet, paged by ``(run_at, id)``.

A replayed dead letter's priority is read from its stored headers in SQL (the JSON as
``escape``-encoded text, ASCII whatever the database's encoding; a quoted key followed by a
quoted digit can only be the header itself, since JSON escapes quotes inside strings).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from chicory.broker import DeadLetter
from chicory.delayed import DelayedMessage, DelayedPage
from chicory.inspection import DeadLetterPage, QueueStats

if TYPE_CHECKING:
    from chicory_postgres.base import PostgresBrokerBase

__all__ = [
    "dead_letter_page",
    "delayed_page",
    "delete_dead_letter",
    "delete_queue",
    "get_dead_letter",
    "purge_dead_letters",
    "queue_stats",
    "queues",
    "remove_delayed",
    "replay",
    "trim_dead_letters",
]

_DEAD_COLUMNS = "id, queue, body, headers, reason, delivery_count, dead_at"

_REPLAY = """
WITH gone AS (
    DELETE FROM {s}.dead_letters WHERE queue = %(queue)s AND id = %(dead_id)s
    RETURNING body, headers
), ins AS (
    INSERT INTO {s}.messages (id, queue, body, headers, run_at, priority)
    SELECT %(new_id)s, %(queue)s, coalesce(%(body)s, gone.body),
           coalesce(%(headers)s::bytea, gone.headers), statement_timestamp(),
           coalesce(substring(encode(coalesce(%(headers)s::bytea, gone.headers), 'escape')
                              FROM '"chicory-priority": ?"([0-9])"')::smallint, 0)
    FROM gone
    RETURNING 1
)
SELECT count(*), {notify} FROM ins
"""


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    dead_id, queue, body, headers, reason, count, dead_at = row
    return DeadLetter(
        id=str(dead_id),
        queue=queue,
        body=bytes(body),
        headers=orjson.loads(headers),
        reason=reason,
        delivery_count=count,
        dead_at=dead_at.astimezone(UTC),
    )


def _dead_id(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < 2**63 else None


async def trim_dead_letters(broker: PostgresBrokerBase, queue: str) -> None:
    """Drop the dead letters of ``queue`` over the broker's count and age limits."""
    settings = broker.settings
    if settings.dead_letter_max_age is not None:
        await broker.execute(
            broker.sql.trim_dead_age,
            {"queue": queue, "age": settings.dead_letter_max_age},
            doing="trimming dead letters",
        )
    if settings.dead_letter_max_count is not None:
        await broker.execute(
            broker.sql.trim_dead_count,
            {"queue": queue, "keep": settings.dead_letter_max_count},
            doing="trimming dead letters",
        )


async def queues(broker: PostgresBrokerBase) -> list[str]:
    """Every queue registered (published to, consumed, or holding dead letters), sorted."""
    statement = broker.sql.fill(
        "SELECT name FROM {s}.queues UNION SELECT DISTINCT queue FROM {s}.dead_letters"
    )
    rows = await broker.fetch_rows(statement, {}, doing="listing queues")
    return sorted(row[0] for row in rows)


async def queue_stats(broker: PostgresBrokerBase, names: Sequence[str]) -> list[QueueStats]:
    """Counts of each of ``names``, in order, in one query."""
    if not names:
        return []
    settings = broker.settings
    params = {
        "queues": list(names),
        "dead_max_count": settings.dead_letter_max_count,
        "dead_max_age": settings.dead_letter_max_age,
    }
    rows = await broker.fetch_rows(broker.sql.counts, params, doing="counting")
    return [
        QueueStats(
            queue=name,
            ready=ready,
            in_flight=in_flight,
            delayed=delayed,
            dead=dead,
            consumers=consumers,
            oldest_ready_at=None if oldest is None else oldest.astimezone(UTC),
        )
        for name, ready, in_flight, delayed, dead, oldest, consumers in rows
    ]


async def dead_letter_page(
    broker: PostgresBrokerBase,
    queue: str,
    *,
    after: str | None,
    limit: int,
    since: datetime | None,
    until: datetime | None,
    newest_first: bool,
) -> DeadLetterPage:
    """One page of ``queue``'s dead letters (see :class:`chicory.inspection.Inspection`).

    Raises:
        ValueError: ``limit`` below 1, a naive time, or a cursor that is no dead letter id.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(f"times must be aware datetimes (UTC), got the naive {moment!r}")
    cursor = None
    if after is not None:
        cursor = _dead_id(after)
        if cursor is None:
            raise ValueError(f"{after!r} is not a dead-letter cursor of the PostgreSQL broker")
    await trim_dead_letters(broker, queue)
    where = ["queue = %(queue)s"]
    if cursor is not None:
        where.append("id < %(after)s" if newest_first else "id > %(after)s")
    if since is not None:
        where.append("dead_at >= %(since)s")
    if until is not None:
        where.append("dead_at < %(until)s")
    order = "id DESC" if newest_first else "id"
    statement = broker.sql.fill(
        f"SELECT {_DEAD_COLUMNS} FROM {{s}}.dead_letters WHERE {' AND '.join(where)} "
        f"ORDER BY {order} LIMIT %(limit)s"
    )
    rows = await broker.fetch_rows(
        statement,
        {"queue": queue, "after": cursor, "since": since, "until": until, "limit": limit + 1},
        doing="listing dead letters",
    )
    letters = [_dead_letter(row) for row in rows[:limit]]
    more = len(rows) > limit
    return DeadLetterPage(letters=letters, next_after=letters[-1].id if more else None)


async def get_dead_letter(
    broker: PostgresBrokerBase, queue: str, dead_letter_id: str
) -> DeadLetter | None:
    """One dead letter of ``queue``, or ``None``."""
    dead_id = _dead_id(dead_letter_id)
    if dead_id is None:
        return None
    await trim_dead_letters(broker, queue)
    statement = broker.sql.fill(
        f"SELECT {_DEAD_COLUMNS} FROM {{s}}.dead_letters WHERE queue = %(queue)s AND id = %(id)s"
    )
    rows = await broker.fetch_rows(
        statement, {"queue": queue, "id": dead_id}, doing="reading a dead letter"
    )
    return _dead_letter(rows[0]) if rows else None


async def replay(
    broker: PostgresBrokerBase,
    queue: str,
    dead_letter_id: str,
    replacement: tuple[bytes, Mapping[str, str]] | None,
) -> bool:
    """Swap a dead letter for a new ready message in one statement (its own body and
    headers, or ``replacement``); False if ``queue`` has no such dead letter."""
    dead_id = _dead_id(dead_letter_id)
    if dead_id is None:
        return False
    await trim_dead_letters(broker, queue)
    channel = broker.settings.channel("wake") if broker.settings.notify else None
    statement = broker.sql.fill(
        _REPLAY.replace("{notify}", "pg_notify(%(channel)s, %(queue)s)" if channel else "NULL")
    )
    body, headers = replacement if replacement is not None else (None, None)
    rows = await broker.fetch_rows(
        statement,
        {
            "queue": queue,
            "dead_id": dead_id,
            "new_id": uuid.uuid4(),
            "body": body,
            "headers": None if headers is None else orjson.dumps(dict(headers)),
            "channel": channel,
        },
        doing="replaying a dead letter",
    )
    replayed = bool(rows and rows[0][0])
    if replayed:
        broker.wake_local(queue)
    return replayed


async def delete_dead_letter(broker: PostgresBrokerBase, queue: str, dead_letter_id: str) -> bool:
    """Delete one dead letter; False if unknown."""
    dead_id = _dead_id(dead_letter_id)
    if dead_id is None:
        return False
    statement = broker.sql.fill(
        "DELETE FROM {s}.dead_letters WHERE queue = %(queue)s AND id = %(id)s"
    )
    changed = await broker.execute(
        statement, {"queue": queue, "id": dead_id}, doing="deleting a dead letter"
    )
    return changed > 0


async def purge_dead_letters(broker: PostgresBrokerBase, queue: str) -> int:
    """Delete every dead letter of ``queue``; return how many (within the limits)."""
    await trim_dead_letters(broker, queue)
    statement = broker.sql.fill("DELETE FROM {s}.dead_letters WHERE queue = %(queue)s")
    return await broker.execute(statement, {"queue": queue}, doing="purging dead letters")


async def delete_queue(broker: PostgresBrokerBase, queue: str) -> None:
    """Delete every message, dead letter, unique-key claim and the registration of
    ``queue``."""
    tables = (
        ("messages", "queue"),
        ("dead_letters", "queue"),
        ("queues", "name"),
        ("consumers", "queue"),
        ("unique_keys", "queue"),
    )
    for table, column in tables:
        statement = broker.sql.fill(f"DELETE FROM {{s}}.{table} WHERE {column} = %(queue)s")
        await broker.execute(statement, {"queue": queue}, doing="deleting a queue")


def _cursor(due: datetime, message_id: uuid.UUID) -> str:
    return f"{due.astimezone(UTC).isoformat()}|{message_id}"


def _parse_cursor(after: str) -> tuple[datetime, uuid.UUID]:
    try:
        due_text, _, id_text = after.partition("|")
        due = datetime.fromisoformat(due_text)
        if due.tzinfo is None:
            raise ValueError(due_text)
        return due, uuid.UUID(id_text)
    except ValueError:
        raise ValueError(
            f"{after!r} is not a delayed-listing cursor of the PostgreSQL broker"
        ) from None


async def delayed_page(
    broker: PostgresBrokerBase, queue: str, *, after: str | None, limit: int
) -> DelayedPage:
    """One page of ``queue``'s delayed messages, soonest due first, then by id.

    Raises:
        ValueError: ``limit`` below 1 or a cursor this broker did not make.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    where = "queue = %(queue)s AND locked_until IS NULL AND run_at > statement_timestamp()"
    params: dict[str, Any] = {"queue": queue, "limit": limit + 1}
    if after is not None:
        params["due"], params["id"] = _parse_cursor(after)
        where += " AND (run_at, id) > (%(due)s, %(id)s)"
    statement = broker.sql.fill(
        f"SELECT id, body, headers, run_at FROM {{s}}.messages WHERE {where} "
        "ORDER BY run_at, id LIMIT %(limit)s"
    )
    rows = await broker.fetch_rows(statement, params, doing="listing delayed messages")
    messages = [
        DelayedMessage(
            id=str(message_id),
            queue=queue,
            body=bytes(body),
            headers=orjson.loads(headers),
            due_at=due.astimezone(UTC),
        )
        for message_id, body, headers, due in rows[:limit]
    ]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    return DelayedPage(
        messages=messages, next_after=_cursor(last[3], last[0]) if last is not None else None
    )


async def remove_delayed(broker: PostgresBrokerBase, queue: str, message_id: str) -> bool:
    """Delete a delayed message (one that is not leased and not due); False otherwise."""
    try:
        key = uuid.UUID(message_id)
    except ValueError:
        return False
    statement = broker.sql.fill(
        "DELETE FROM {s}.messages WHERE queue = %(queue)s AND id = %(id)s "
        "AND locked_until IS NULL AND run_at > statement_timestamp()"
    )
    return await broker.execute(statement, {"queue": queue, "id": key}, doing="removing") > 0
