"""The Redis broker's side of the ``delayed_listing`` capability (:mod:`chicory.delayed`).

A queue's delayed messages are members of its ``delayed`` sorted set, each a packed message
(:mod:`chicory_redis.entries`) scored by its due time in ms. Members of equal score sort by
their bytes, which start with the message id, so "by due time, then id" is the set's own
order: a page is a ``ZRANGEBYSCORE`` from the cursor's score, skipping what the cursor
already covered (a cursor is ``"<score>/<id>"``). Removing one is a ``ZSCAN`` for the member
starting with its id, then ``ZREM``, which removes it only if the ``move_due`` script has not
moved it to the stream first: whichever runs first wins, and the message is delivered or
removed, never both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chicory.delayed import DelayedMessage, DelayedPage
from chicory_redis.connection import broker_errors
from chicory_redis.entries import message_from_packed

if TYPE_CHECKING:
    from chicory_redis.base import BrokerBase

__all__ = ["delayed_page", "remove_delayed"]

_CHUNK = 200


def _cursor(after: str) -> tuple[float, str]:
    score, sep, message_id = after.partition("/")
    try:
        value = float(score)
    except ValueError:
        sep = ""
    if not sep:
        raise ValueError(f"{after!r} is not a delayed-page cursor of the Redis broker")
    return value, message_id


async def delayed_page(
    broker: BrokerBase, queue: str, *, after: str | None, limit: int
) -> DelayedPage:
    """One page of ``queue``'s delayed messages (see the module docstring).

    Raises:
        ValueError: ``limit`` is below 1, or ``after`` is not a cursor.
        BrokerConnectionError: Redis could not be reached.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    mark = _cursor(after) if after is not None else None
    key = broker.keys.queue(queue).delayed
    low: Any = "-inf" if mark is None else mark[0]
    found: list[tuple[float, bytes]] = []
    offset = 0
    with broker_errors(broker.display_url, f"list the delayed messages of {queue}"):
        while len(found) <= limit:
            items: Any = await broker.client.zrangebyscore(
                key, low, "+inf", start=offset, num=_CHUNK, withscores=True
            )
            if not items:
                break
            offset += len(items)
            for member, score in items:
                head = bytes(member).split(b"\n", 1)[0].decode(errors="replace")
                if mark is not None and score == mark[0] and head <= mark[1]:
                    continue  # the cursor's page had it
                found.append((float(score), bytes(member)))
    page = found[:limit]
    messages = []
    for score, member in page:
        stored = message_from_packed(b"", member)
        messages.append(
            DelayedMessage(
                id=stored.message_id,
                queue=queue,
                body=stored.body,
                headers=dict(stored.headers),
                due_at=datetime.fromtimestamp(score / 1000, UTC),
            )
        )
    more = len(found) > limit
    last = f"{page[-1][0]!r}/{messages[-1].id}" if more else None
    return DelayedPage(messages=messages, next_after=last)


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


async def remove_delayed(broker: BrokerBase, queue: str, message_id: str) -> bool:
    """Remove the delayed message ``message_id`` of ``queue``; False if it is not there.

    Raises:
        BrokerConnectionError: Redis could not be reached.
    """
    key = broker.keys.queue(queue).delayed
    prefix = message_id.encode() + b"\n"
    with broker_errors(broker.display_url, f"remove delayed message {message_id}"):
        async for member, _ in broker.client.zscan_iter(
            key, match=_glob_escape(message_id) + "\n*", count=500
        ):
            if member.startswith(prefix):
                return bool(await broker.client.zrem(key, member))
    return False
