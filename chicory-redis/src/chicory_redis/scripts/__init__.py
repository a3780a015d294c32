"""The Lua scripts that make multi-step Redis operations atomic, and how they are run.

One module per concern: :mod:`~chicory_redis.scripts.publishing` (new messages),
:mod:`~chicory_redis.scripts.consuming` (moving due messages, reading priority levels,
forgetting idle members),
:mod:`~chicory_redis.scripts.settling` (ack, requeue, dead-letter, renew),
:mod:`~chicory_redis.scripts.dead` (dead letters), :mod:`~chicory_redis.scripts.results`
(the result backend); the shared Lua helpers and :class:`Script` in
:mod:`~chicory_redis.scripts.base`, running them in :mod:`~chicory_redis.scripts.runner`.
Everything is importable from this package.

Each script touches the keys of one queue (one hash tag) or one result key only, so all are
Redis Cluster safe. Scripts are loaded once on connect and called with ``EVALSHA``.

A message is stored packed, ``id \\n n \\n headers \\n body`` (the message id, stable across
redeliveries; deliveries before this entry was added, carried across requeues; headers as
JSON; the body): a stream entry is the one field ``m`` holding it, and a delayed message is
the same string as a sorted-set member scored by its due time in milliseconds (see
:mod:`chicory_redis.entries`). One field instead of four makes every ``XADD`` and every
entry ``XREADGROUP`` returns cheaper for Redis, and a script moves a message between the
delayed set and the stream without taking it apart. Dead letters keep one field per part
(``id``, ``n``, ``headers``, ``body``) plus ``reason`` and ``dead_at`` (ms), for people
reading them with ``XRANGE``.

Priorities: a queue's messages of priority 0 (and those without one) are in its stream;
those of priority 1 to 9 in one stream per priority, made when the first is sent and
recorded in the queue's levels set (:mod:`chicory_redis.keys`). Scripts that move a
message into a stream route it by the ``chicory-priority`` header; a queue without a level
above 0 costs them nothing.

Settle scripts first check, with ``XPENDING ... <id> <id> 1 <consumer>`` (or one ``XPENDING``
over the range a batch spans), that the entry is still pending *for the calling consumer*: a
consumer whose lease expired and whose entry was reclaimed by another consumer can no longer
ack, requeue or renew it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from redis.asyncio import Redis

from chicory_redis.scripts.base import Script
from chicory_redis.scripts.consuming import FORGET_IDLE, MOVE_DUE, READ_LEVELS
from chicory_redis.scripts.dead import REPLAY, REQUEUE_DEAD, TRIM_DEAD
from chicory_redis.scripts.publishing import ENQUEUE, PUBLISH_UNIQUE, RELEASE_UNIQUE
from chicory_redis.scripts.results import JOIN_GROUP, STORE_PROGRESS, STORE_RESULT, STORE_RESULTS
from chicory_redis.scripts.runner import (
    CHUNK,
    CHUNK_BYTES,
    Arg,
    Call,
    chunked,
    load_scripts,
    open_client,
    run,
    run_many,
)
from chicory_redis.scripts.settling import ACK, DEAD_LETTER, RENEW, REQUEUE

__all__ = [
    "ACK",
    "ALL_SCRIPTS",
    "CHUNK",
    "CHUNK_BYTES",
    "DEAD_LETTER",
    "ENQUEUE",
    "FORGET_IDLE",
    "JOIN_GROUP",
    "MOVE_DUE",
    "PUBLISH_UNIQUE",
    "READ_LEVELS",
    "RELEASE_UNIQUE",
    "RENEW",
    "REPLAY",
    "REQUEUE",
    "REQUEUE_DEAD",
    "STORE_PROGRESS",
    "STORE_RESULT",
    "STORE_RESULTS",
    "TRIM_DEAD",
    "Arg",
    "Call",
    "Script",
    "chunked",
    "load_all",
    "open_client",
    "run",
    "run_many",
]

ALL_SCRIPTS: Final = (
    ACK,
    ENQUEUE,
    REQUEUE,
    DEAD_LETTER,
    RENEW,
    MOVE_DUE,
    READ_LEVELS,
    FORGET_IDLE,
    REPLAY,
    REQUEUE_DEAD,
    STORE_RESULT,
    STORE_RESULTS,
    TRIM_DEAD,
    PUBLISH_UNIQUE,
    RELEASE_UNIQUE,
)
"""Every script of this package, loaded by the broker on connect."""


async def load_all(client: Redis, scripts: Sequence[Script] = ALL_SCRIPTS) -> None:
    """Load ``scripts`` (default: all of them) into the server's script cache (one round
    trip)."""
    await load_scripts(client, scripts)
