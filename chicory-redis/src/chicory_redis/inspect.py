"""The Redis broker's side of the ``inspection`` capability: what operators' tools read.

* Queues: the set ``<p>:queues`` (:mod:`chicory_redis.keys`), added to by a broker the first
  time it publishes to a queue and by every consumer when it joins a queue's group; never
  found by scanning the keyspace.
* Stats of many queues in three round trips, whatever their number: due delayed messages
  are moved first (as :meth:`RedisBroker.counts` does; the reply also names each queue's
  priority levels), then one pipeline reads the group info and length of each stream of
  each queue (one per level), then one reads the first undelivered entry of each stream with
  some (its stream id's time is when it became ready; the oldest of a queue's streams
  counts). Consumers are the members of the queue's
  presence set whose presence has not expired: every consumer renews its own every
  ``reclaim_interval`` while it fetches, for ``max(lease_seconds, 3 * reclaim_interval)``.
* Dead letters by page: ``XRANGE`` (or ``XREVRANGE``) over the dead-letter stream, from just
  past the cursor (an entry id), bounded by the times as entry ids: a page costs the same
  with 100 or 1,000,000 dead letters. Times select by the entry id, which is the Redis
  server's clock when the letter was recorded (``dead_at`` is the recording client's).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chicory.broker import DeadLetter
from chicory.clock import to_epoch
from chicory.errors import BrokerError
from chicory.inspection import DeadLetterPage, QueueStats
from chicory_redis import scripts
from chicory_redis.connection import broker_errors
from chicory_redis.entries import STREAM_ID, dead_letter_from_entry, encode_headers, pack_message
from chicory_redis.keys import QueueKeys
from chicory_redis.levels import level_of, valid_levels

if TYPE_CHECKING:
    from chicory_redis.base import BrokerBase

__all__ = [
    "dead_letter_page",
    "get_dead_letter",
    "list_queues",
    "presence_seconds",
    "queue_stats",
    "requeue_dead_letter",
]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _id_time(entry_id: bytes | str) -> datetime:
    return datetime.fromtimestamp(_id_key(_text(entry_id))[0] / 1000, UTC)


def presence_seconds(lease_seconds: float, reclaim_interval: float) -> float:
    """How long a consumer's presence lasts after it renewed it last."""
    return max(lease_seconds, 3 * reclaim_interval)


async def list_queues(broker: BrokerBase) -> list[str]:
    """Every queue in the broker's registry, sorted."""
    with broker_errors(broker.display_url, "list queues"):
        members: Any = await broker.client.smembers(broker.keys.queues)
    return sorted(_text(m) for m in members)


def move_due_call(k: QueueKeys, now_ms: int) -> scripts.Call:
    """The ``move_due`` call that readers of a queue's counts run first (its reply also
    names the queue's priority levels: see :func:`streams_of`)."""
    return scripts.Call(scripts.MOVE_DUE, (k.delayed, k.stream, k.levels), (now_ms, 1000))


def streams_of(k: QueueKeys, moved: Sequence[Any]) -> list[QueueKeys]:
    """The keys of each stream of queue ``k`` (level 0 first), from its ``move_due`` reply."""
    return [k, *(k.at_level(level) for level in sorted(set(valid_levels(moved[2:]))))]


def stream_counts(group_name: str, groups: Any, length: Any) -> tuple[int, int, str | None]:
    """``(ready, in flight, last delivered id)`` of one stream, from its ``XINFO GROUPS`` and
    ``XLEN`` replies: ready is the group's ``lag`` where Redis can tell, else the length minus
    the pending entries (exact, since acked entries are deleted)."""
    found = [] if isinstance(groups, Exception) else groups
    group = next((g for g in found if _text(g["name"]) == group_name), None)
    if group is None:
        return int(length), 0, None
    in_flight = int(group["pending"])
    lag = group.get("lag")
    ready = int(lag) if lag is not None else max(int(length) - in_flight, 0)
    return ready, in_flight, _text(group["last-delivered-id"])


async def queue_stats(broker: BrokerBase, names: Sequence[str]) -> list[QueueStats]:
    """The stats of each of ``names`` (see the module docstring)."""
    if not names:
        return []
    client, keys = broker.client, [broker.keys.queue(name) for name in names]
    now_ms = int(broker.clock.time() * 1000)
    with broker_errors(broker.display_url, "read queue stats"):
        moves = await scripts.run_many(client, [move_due_call(k, now_ms) for k in keys])
        for moved in moves:
            if isinstance(moved, Exception):
                raise moved
        streams = [streams_of(k, moved) for k, moved in zip(keys, moves, strict=True)]
        pipe = client.pipeline(transaction=False)
        for k, queue_streams in zip(keys, streams, strict=True):
            for stream_keys in queue_streams:
                pipe.xinfo_groups(stream_keys.stream)
                pipe.xlen(stream_keys.stream)
            pipe.zcard(k.delayed)
            pipe.xlen(k.dead)
            pipe.zcount(k.consumers, now_ms, "+inf")
        replies = iter(await pipe.execute(raise_on_error=False))
        rows: list[tuple[int, int, int, int, int, int]] = []  # ..., how many heads
        pipe = client.pipeline(transaction=False)
        for k, queue_streams in zip(keys, streams, strict=True):
            ready = in_flight = heads = 0
            for stream_keys in queue_streams:
                groups, length = next(replies), next(replies)
                if isinstance(length, Exception):
                    raise BrokerError(f"could not read the stats of queue {k.queue!r}: {length}")
                counted = stream_counts(k.group, groups, length)
                ready += counted[0]
                in_flight += counted[1]
                if counted[0]:  # its first undelivered entry: when it became ready
                    last = counted[2]
                    pipe.xrange(
                        stream_keys.stream, "-" if last is None else f"({last}", "+", count=1
                    )
                    heads += 1
            delayed, dead, consumers = next(replies), next(replies), next(replies)
            for value in (delayed, dead, consumers):
                if isinstance(value, Exception):
                    raise BrokerError(f"could not read the stats of queue {k.queue!r}: {value}")
            rows.append((ready, in_flight, int(delayed), int(dead), int(consumers), heads))
        firsts = iter(await pipe.execute(raise_on_error=False))
    out = []
    for k, (ready, in_flight, delayed, dead, consumers, heads) in zip(keys, rows, strict=True):
        times = [
            _id_time(head[0][0])
            for head in (next(firsts) for _ in range(heads))
            if not isinstance(head, Exception) and head
        ]
        out.append(
            QueueStats(
                queue=k.queue,
                ready=ready,
                in_flight=in_flight,
                delayed=delayed,
                dead=dead,
                consumers=consumers,
                oldest_ready_at=min(times, default=None),
            )
        )
    return out


def _bound(moment: datetime) -> str:
    """The first entry id at or after ``moment`` (whole milliseconds, rounded up)."""
    return f"{math.ceil(to_epoch(moment) * 1000)}-0"


def _later(a: str, b: str) -> str:
    """The later of two range starts, each an entry id, ``(``-prefixed when exclusive."""
    return a if _id_key(a.lstrip("(")) >= _id_key(b.lstrip("(")) else b


def _earlier(a: str, b: str) -> str:
    return a if _id_key(a.lstrip("(")) <= _id_key(b.lstrip("(")) else b


async def dead_letter_page(
    broker: BrokerBase,
    queue: str,
    *,
    after: str | None,
    limit: int,
    since: datetime | None,
    until: datetime | None,
    newest_first: bool,
) -> DeadLetterPage:
    """One page of dead letters (see the module docstring).

    Raises:
        ValueError: ``limit`` is below 1, ``after`` is not an entry id, or a time is naive.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if after is not None and not STREAM_ID.match(after):
        raise ValueError(f"{after!r} is not a dead letter id of the Redis broker")
    low = _bound(since) if since is not None else None  # inclusive
    high = f"({_bound(until)}" if until is not None else None  # exclusive
    k = broker.keys.queue(queue)
    client = broker.client
    with broker_errors(broker.display_url, f"list dead letters of {queue!r}"):
        if newest_first:
            end = high or "+"
            if after is not None:
                end = _earlier(end, f"({after}") if end != "+" else f"({after}"
            entries: Any = await client.xrevrange(k.dead, end, low or "-", count=limit + 1)
        else:
            start = low or "-"
            if after is not None:
                start = _later(start, f"({after}") if start != "-" else f"({after}"
            entries = await client.xrange(k.dead, start, high or "+", count=limit + 1)
    letters = [dead_letter_from_entry(queue, eid, fields) for eid, fields in entries[:limit]]
    more = len(entries) > limit
    return DeadLetterPage(letters=letters, next_after=letters[-1].id if more else None)


async def get_dead_letter(broker: BrokerBase, queue: str, dead_letter_id: str) -> DeadLetter | None:
    """One dead letter of ``queue`` (``XRANGE id id``), or ``None``."""
    if not STREAM_ID.match(dead_letter_id):
        return None
    k = broker.keys.queue(queue)
    with broker_errors(broker.display_url, f"read a dead letter of {queue!r}"):
        entries: Any = await broker.client.xrange(k.dead, dead_letter_id, dead_letter_id, count=1)
    if not entries:
        return None
    entry_id, fields = entries[0]
    return dead_letter_from_entry(queue, entry_id, fields)


async def requeue_dead_letter(
    broker: BrokerBase,
    queue: str,
    dead_letter_id: str,
    body: bytes,
    headers: Mapping[str, str],
    message_id: str,
) -> bool:
    """Replace a dead letter by a new message, atomically (the ``requeue_dead`` script)."""
    if not STREAM_ID.match(dead_letter_id):
        return False
    k = broker.keys.queue(queue)
    packed = pack_message(message_id, 0, encode_headers(headers), body)
    level = level_of(headers) if headers else 0
    if level:  # the message goes to its priority's stream
        call_keys: tuple[str, ...] = (k.dead, k.at_level(level).stream, k.levels)
        args: tuple[str | bytes, ...] = (dead_letter_id, packed, str(level))
    else:
        call_keys, args = (k.dead, k.stream), (dead_letter_id, packed)
    with broker_errors(broker.display_url, f"requeue a dead letter of {queue!r}"):
        done = await scripts.run(broker.client, scripts.REQUEUE_DEAD, call_keys, args)
    return bool(done)
