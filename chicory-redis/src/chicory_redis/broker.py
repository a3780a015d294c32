"""``redis://``: the production broker, on Redis Streams with one consumer group per queue.

Where things live is in :mod:`chicory_redis.keys`, the atomic steps in
:mod:`chicory_redis.scripts`, consuming in :mod:`chicory_redis.consumer` and settling in
:mod:`chicory_redis.delivery`. This module is the facade: connecting, publishing, counts
and dead-letter administration. What each guarantee costs in round trips is in
``docs/redis.md``.

Many workers on many machines may share one Redis: each consumer is a member of every
queue's consumer group, Redis hands each entry to one of them, and entries of a consumer
that died are reclaimed by the others after ``lease_seconds``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis

from chicory.broker import Capabilities, DeadLetter, OutgoingMessage, QueueCounts
from chicory.clock import Clock, SystemClock, to_epoch
from chicory.delayed import DelayedPage
from chicory.errors import BrokerError, MessageTooLargeError
from chicory.inspection import DeadLetterPage, QueueStats
from chicory.unique import UniqueClaim
from chicory_redis import delayed, inspect, scripts, sending, unique
from chicory_redis.config import RedisSettings, parse_settings
from chicory_redis.connection import broker_errors
from chicory_redis.consumer import RedisConsumer
from chicory_redis.entries import (
    STREAM_ID,
    dead_letter_from_entry,
    encode_headers,
    new_message_id,
    new_message_ids,
    pack_message,
)
from chicory_redis.keys import KeySpace, QueueKeys
from chicory_redis.ledger import Ledger
from chicory_redis.sending import Command

__all__ = ["PUBLISH_CHUNK", "RedisBroker"]

log = logging.getLogger("chicory.redis")

PUBLISH_CHUNK = scripts.CHUNK
"""Most messages added by one ``enqueue`` script call (each call runs atomically)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBroker:
    """A shared, persistent broker on Redis 6.2+ (Redis 7 recommended).

    Args:
        settings: Connection and behaviour settings (default: ``redis://localhost:6379/0``).
        clock: Source of time for delayed messages and ``dead_at`` (default: the real clock).
            Lease expiry is measured by the Redis server itself (entry idle time).
    """

    def __init__(self, settings: RedisSettings | None = None, *, clock: Clock | None = None):
        self._settings = settings if settings is not None else RedisSettings()
        self._keys = KeySpace(self._settings.key_prefix)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._client: Redis | None = None
        self._consumers: set[RedisConsumer] = set()
        self._registered: set[str] = set()  # queues this broker added to the queue registry
        self._reclaimed_total = 0
        self._capabilities = Capabilities(
            delayed_delivery=True,
            lease_renewal=True,
            dead_letter=True,
            fifo=True,
            priorities=False,
            atomic_retry=True,
            shared=True,
            max_body_bytes=self._settings.max_body_bytes,
            lease_seconds=self._settings.lease_seconds,
            dead_letter_max_count=self._settings.dead_letter_max_count,
            dead_letter_max_age=self._settings.dead_letter_max_age,
            delete_queue=True,
            inspection=True,
            delayed_listing=True,
            unique_enqueue=True,
        )

    @classmethod
    def from_url(
        cls, url: str = "redis://localhost:6379/0", *, clock: Clock | None = None, **options: Any
    ) -> RedisBroker:
        """Build a broker from a URL and options (see :mod:`chicory_redis.config`).

        Raises:
            ConfigurationError: bad URL or option.
        """
        return cls(parse_settings(url, **options), clock=clock)

    def __repr__(self) -> str:
        return f"<RedisBroker {self.display_url}>"

    @property
    def settings(self) -> RedisSettings:
        """The broker's settings."""
        return self._settings

    @property
    def keys(self) -> KeySpace:
        """The key names this broker uses."""
        return self._keys

    @property
    def clock(self) -> Clock:
        """The broker's clock."""
        return self._clock

    @property
    def display_url(self) -> str:
        """The server URL with the password redacted."""
        return self._settings.display_url

    @property
    def capabilities(self) -> Capabilities:
        """What this broker can do (everything but priorities, inspection included)."""
        return self._capabilities

    @property
    def reclaimed_total(self) -> int:
        """How many entries this broker's consumers reclaimed from dead or stalled ones."""
        return self._reclaimed_total

    @property
    def client(self) -> Redis:
        """The connected ``redis.asyncio`` client.

        Raises:
            BrokerError: the broker is not connected.
        """
        if self._client is None:
            raise BrokerError("the Redis broker is not connected; use 'async with broker:'")
        return self._client

    @property
    def client_or_none(self) -> Redis | None:
        """The client, or ``None`` when not connected."""
        return self._client

    def note_reclaimed(self, queue: str, count: int) -> None:
        """Count ``count`` reclaimed entries of ``queue`` (called by consumers)."""
        self._reclaimed_total += count

    def forget(self, consumer: RedisConsumer) -> None:
        """Stop tracking a closed consumer (called by the consumer)."""
        self._consumers.discard(consumer)

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, check the server answers, and load the Lua scripts. Idempotent.

        Raises:
            BrokerConnectionError: Redis cannot be reached.
        """
        if self._client is not None:
            return
        self._client = await scripts.open_client(self._settings, scripts.ALL_SCRIPTS, broker_errors)

    async def close(self) -> None:
        """Close every consumer (handing deliveries back), then the connections. Idempotent."""
        try:
            for consumer in list(self._consumers):
                await consumer.close()
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose(close_connection_pool=True)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- publishing ------------------------------------------------------------------------

    def check_body(self, body: bytes) -> None:
        """Raise :class:`MessageTooLargeError` if ``body`` is over ``max_body_bytes``."""
        limit = self._settings.max_body_bytes
        if len(body) > limit:
            raise MessageTooLargeError(
                f"message body is {len(body)} bytes; the Redis broker accepts at most {limit} "
                "(raise max_body_bytes, up to 512 MiB, or send less data)"
            )

    def due_ms(self, not_before: datetime | None) -> int | None:
        """``not_before`` in ms since the epoch, or ``None`` when it is not in the future.

        Raises:
            ValueError: ``not_before`` is naive.
        """
        if not_before is None:
            return None
        at = to_epoch(not_before)
        return Ledger.due_ms(at) if at > self._clock.time() else None

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        """Enqueue one message (``XADD``, or ``ZADD`` when delayed); return its id.

        Raises:
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: the body exceeds ``max_body_bytes``.
            BrokerConnectionError: Redis could not be reached.
        """
        ids = await self.publish_many(
            queue, [OutgoingMessage(body=body, headers=headers or {}, not_before=not_before)]
        )
        return ids[0]

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in one round trip; return their ids in order.

        One message is one ``XADD`` (or ``ZADD``); more are added by the ``enqueue`` script,
        up to :data:`PUBLISH_CHUNK` messages (or about 1 MiB of them) per call, ready and
        delayed messages in calls of their own, all calls pipelined.

        Raises:
            ValueError: a ``not_before`` is naive (nothing is published).
            MessageTooLargeError: a body exceeds ``max_body_bytes`` (nothing is published).
            BrokerConnectionError: Redis could not be reached; some may have been published.
        """
        if not messages:
            return []
        if queue not in self._registered:
            await self.register_queues([queue])
        k = self._keys.queue(queue)
        if len(messages) == 1:
            return [await self._publish_one(k, messages[0])]
        ids = new_message_ids(len(messages))
        ready: list[bytes] = []
        delayed: list[tuple[int, bytes]] = []  # (due ms, packed)
        limit = self._settings.max_body_bytes
        for message, message_id in zip(messages, ids, strict=True):
            body = message.body
            if len(body) > limit:
                self.check_body(body)
            headers = encode_headers(message.headers).encode() if message.headers else b"{}"
            packed = b"%s\n0\n%s\n%s" % (message_id.encode(), headers, body)
            if message.not_before is None or (due := self.due_ms(message.not_before)) is None:
                ready.append(packed)
            else:
                delayed.append((due, packed))
        keys = (k.stream, k.delayed)
        calls = [
            scripts.Call(scripts.ENQUEUE, keys, (len(chunk), *chunk))
            for chunk in scripts.chunked(ready, len)
        ]
        calls += [
            scripts.Call(scripts.ENQUEUE, keys, (0, *[part for pair in chunk for part in pair]))
            for chunk in scripts.chunked(delayed, lambda pair: len(pair[1]))
        ]
        await self.send([call.command() for call in calls], f"publish to queue {queue!r}")
        return ids

    async def _publish_one(self, k: QueueKeys, message: OutgoingMessage) -> str:
        """One message, one plain command: ``XADD``, or ``ZADD`` when delayed."""
        self.check_body(message.body)
        due = self.due_ms(message.not_before)
        message_id = new_message_id()
        packed = pack_message(message_id, 0, encode_headers(message.headers), message.body)
        command: Command
        if due is None:
            command = ("XADD", k.stream, "*", "m", packed)
        else:
            command = ("ZADD", k.delayed, due, packed)
        await self.send([command], f"publish to queue {k.queue!r}")
        return message_id

    async def send(self, commands: Sequence[Command], what: str) -> list[Any]:
        """Run writes that must not be repeated blindly; see :func:`chicory_redis.sending.send`.

        Raises:
            BrokerConnectionError: Redis could not be reached; nothing was written.
            PublishOutcomeUnknownError: the connection failed after the commands were sent,
                so they may or may not have run.
            BrokerAuthenticationError: Redis refused the credentials or the command.
            BrokerError: Redis refused a command (the others may have run).
        """
        return await sending.send(self.client, self._settings, commands, what)

    async def register_queues(self, queues: Sequence[str]) -> None:
        """Add ``queues`` to the queue registry (``SADD``), once per queue per broker.

        Called by the first publish to a queue and by consumers joining a queue's group, so
        ``chicory queues`` finds a queue nobody consumes.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        new = [queue for queue in queues if queue not in self._registered]
        if not new:
            return
        with broker_errors(self.display_url, "register queues"):
            await self.client.sadd(self._keys.queues, *new)
        self._registered.update(new)

    def consume(self, queues: Sequence[str], *, prefetch: int) -> RedisConsumer:
        """Open a consumer on ``queues`` holding at most ``prefetch`` unsettled deliveries.

        Raises:
            BrokerError: the broker is not connected.
            ConfigurationError: no queues, or ``prefetch`` below 1.
        """
        _ = self.client
        consumer = RedisConsumer(self, queues, prefetch)
        self._consumers.add(consumer)
        return consumer

    # -- inspection ------------------------------------------------------------------------

    async def counts(self, queue: str) -> QueueCounts:
        """Return the counts of ``queue`` (moving due delayed messages first).

        ``ready`` is the group's ``lag`` (entries not yet delivered) where Redis can tell,
        else the stream length minus pending entries (exact here, since acked entries are
        deleted).

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        k, client = self._keys.queue(queue), self.client
        with broker_errors(self.display_url, f"count queue {queue!r}"):
            now_ms = int(self._clock.time() * 1000)
            calls = [
                scripts.Call(scripts.MOVE_DUE, (k.delayed, k.stream), (now_ms, 1000)),
                self._trim_dead_call(k),
            ]
            for result in await scripts.run_many(client, calls):
                if isinstance(result, Exception):
                    raise result
            pipe = client.pipeline(transaction=False)
            pipe.xinfo_groups(k.stream)
            pipe.xlen(k.stream)
            pipe.zcard(k.delayed)
            pipe.xlen(k.dead)
            groups, length, delayed, dead = await pipe.execute(raise_on_error=False)
        for value in (length, delayed, dead):
            if isinstance(value, Exception):
                raise BrokerError(f"could not count queue {queue!r}: {value}")
        found = [] if isinstance(groups, Exception) else groups
        group = next((g for g in found if _text(g["name"]) == k.group), None)
        if group is None:
            ready, in_flight = int(length), 0
        else:
            in_flight = int(group["pending"])
            lag = group.get("lag")
            ready = int(lag) if lag is not None else max(int(length) - in_flight, 0)
        return QueueCounts(ready=ready, in_flight=in_flight, delayed=int(delayed), dead=int(dead))

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """List up to ``limit`` dead letters of ``queue``, oldest first (``XRANGE``), after
        dropping those over the dead-letter limits."""
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"list dead letters of {queue!r}"):
            call = self._trim_dead_call(k)
            await scripts.run(self.client, call.script, call.keys, call.args)
            entries: Any = await self.client.xrange(k.dead, "-", "+", count=limit)
        return [dead_letter_from_entry(queue, eid, fields) for eid, fields in entries]

    def _trim_dead_call(self, k: QueueKeys) -> scripts.Call:
        """Drop the dead letters of a queue over the limits (before listing or counting)."""
        return scripts.Call(scripts.TRIM_DEAD, (k.dead,), self._settings.dead_letter_limits())

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on its queue as a new message, atomically.

        The message keeps its body and headers and gets a new message id and a fresh
        delivery count, at the back of the queue.

        Returns:
            False if ``queue`` has no dead letter ``dead_letter_id``.
        """
        if not STREAM_ID.match(dead_letter_id):
            return False
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"replay a dead letter of {queue!r}"):
            result = await scripts.run(
                self.client,
                scripts.REPLAY,
                (k.dead, k.stream),
                (dead_letter_id, new_message_id()),
            )
        return bool(result)

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter (``XDEL``). False if unknown."""
        if not STREAM_ID.match(dead_letter_id):
            return False
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"delete a dead letter of {queue!r}"):
            deleted = await self.client.xdel(k.dead, dead_letter_id)
        return bool(deleted)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue`` (``XLEN`` + ``DEL`` in a transaction)."""
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"purge dead letters of {queue!r}"):
            pipe = self.client.pipeline(transaction=True)
            pipe.xlen(k.dead)
            pipe.delete(k.dead)
            count, _ = await pipe.execute()
        return int(count)

    async def delete_queue(self, queue: str) -> None:
        """Delete every key of ``queue`` (messages, delayed messages, dead letters, the
        consumer group, consumers' presence, unique keys' claims) and take it out of the
        queue registry (the ``delete_queue`` capability).

        For tests and tear-down; consumers of the queue must be closed first.
        """
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"delete queue {queue!r}"):
            claims = await self.client.zrange(k.uniques, 0, -1)
            await self.client.delete(k.stream, k.delayed, k.dead, k.consumers, k.uniques, *claims)
            await self.client.srem(self._keys.queues, queue)
        self._registered.discard(queue)

    # -- the inspection capability (see chicory_redis.inspect) ------------------------------

    async def queues(self) -> list[str]:
        """Every queue published to or consumed (the ``<p>:queues`` set), sorted.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        return await inspect.list_queues(self)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """The stats of each of ``queues``, in four round trips whatever their number (the
        first drops dead letters over the limits).

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        await self._trim_dead(queues)
        return await inspect.queue_stats(self, queues)

    async def dead_letter_page(
        self,
        queue: str,
        *,
        after: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> DeadLetterPage:
        """One page of the dead letters of ``queue`` (``XRANGE``/``XREVRANGE``, after the
        ``trim_dead`` script drops those over the limits: two round trips).

        Raises:
            ValueError: ``limit`` is below 1, ``after`` is not an entry id, or a time is naive.
            BrokerConnectionError: Redis could not be reached.
        """
        await self._trim_dead([queue])
        return await inspect.dead_letter_page(
            self,
            queue,
            after=after,
            limit=limit,
            since=since,
            until=until,
            newest_first=newest_first,
        )

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter of ``queue``, or ``None`` (also once it is over the limits).

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        await self._trim_dead([queue])
        return await inspect.get_dead_letter(self, queue, dead_letter_id)

    async def _trim_dead(self, queues: Sequence[str]) -> None:
        """Drop the dead letters of ``queues`` over the limits (one round trip)."""
        calls = [self._trim_dead_call(self._keys.queue(queue)) for queue in queues]
        with broker_errors(self.display_url, "trim dead letters"):
            for result in await scripts.run_many(self.client, calls):
                if isinstance(result, Exception):
                    raise result

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Replace a dead letter by a new ready message (one atomic script).

        Raises:
            MessageTooLargeError: ``body`` is over ``max_body_bytes`` (the letter stays).
            BrokerConnectionError: Redis could not be reached; nothing happened.
        """
        self.check_body(body)
        if queue not in self._registered:
            await self.register_queues([queue])
        return await inspect.requeue_dead_letter(
            self, queue, dead_letter_id, body, headers, new_message_id()
        )

    # -- the delayed_listing capability ----------------------------------------------------

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """One page of the delayed messages of ``queue``, soonest due first
        (:mod:`chicory_redis.delayed`).

        Raises:
            ValueError: ``limit`` is below 1, or ``after`` is not a cursor.
            BrokerConnectionError: Redis could not be reached.
        """
        return await delayed.delayed_page(self, queue, after=after, limit=limit)

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove one delayed message of ``queue``, unless it fell due first.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        return await delayed.remove_delayed(self, queue, message_id)

    # -- the unique_enqueue capability (see chicory_redis.unique) ---------------------------

    async def publish_unique(
        self,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """Publish ``message`` unless ``key`` is held in ``queue``, in one script (see
        :meth:`chicory.unique.UniqueEnqueue.publish_unique`).

        Raises:
            ValueError: ``hold``/``keep`` out of range, or ``not_before`` is naive.
            MessageTooLargeError: the body exceeds ``max_body_bytes``.
            BrokerConnectionError: Redis could not be reached; nothing was written.
            PublishOutcomeUnknownError: the connection failed after the script was sent.
        """
        return await unique.publish_unique(
            self, queue, message, key=key, holder=holder, hold=hold, keep=keep
        )

    async def release_unique(self, queue: str, key: str, holder: str) -> bool:
        """End ``holder``'s claim on ``key`` in ``queue``; False if it held none."""
        return await unique.release_unique(self, queue, key, holder)

    async def unique_holder(self, queue: str, key: str) -> str | None:
        """Who holds ``key`` in ``queue`` now, or ``None``."""
        return await unique.holder(self, queue, key)
