"""The operators' face of the Redis broker: counts, queue stats, delayed messages, unique
keys, deleting a queue.

The work is in :mod:`chicory_redis.inspect`, :mod:`chicory_redis.delayed` and
:mod:`chicory_redis.unique`; these methods are the protocol entry points.
"""

from __future__ import annotations

from collections.abc import Sequence

from chicory.broker import OutgoingMessage, QueueCounts
from chicory.delayed import DelayedPage
from chicory.errors import BrokerError
from chicory.inspection import QueueStats
from chicory.unique import UniqueClaim
from chicory_redis import delayed, inspect, scripts, unique
from chicory_redis.base import BrokerBase
from chicory_redis.connection import broker_errors

__all__ = ["AdminMethods"]


class AdminMethods(BrokerBase):
    """The counting, inspection, delayed-listing and unique-enqueue methods of
    :class:`~chicory_redis.broker.RedisBroker`."""

    async def counts(self, queue: str) -> QueueCounts:
        """Return the counts of ``queue`` (moving due delayed messages first).

        ``ready`` is the group's ``lag`` (entries not yet delivered) where Redis can tell,
        else the stream length minus pending entries (exact here, since acked entries are
        deleted), summed over the queue's priority levels, as ``in_flight`` is.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        k, client = self._keys.queue(queue), self.client
        with broker_errors(self.display_url, f"count queue {queue!r}"):
            now_ms = int(self._clock.time() * 1000)
            calls = [inspect.move_due_call(k, now_ms), self._trim_dead_call(k)]
            results = await scripts.run_many(client, calls)
            for result in results:
                if isinstance(result, Exception):
                    raise result
            streams = inspect.streams_of(k, results[0])
            pipe = client.pipeline(transaction=False)
            for stream_keys in streams:
                pipe.xinfo_groups(stream_keys.stream)
                pipe.xlen(stream_keys.stream)
            pipe.zcard(k.delayed)
            pipe.xlen(k.dead)
            *per_stream, delayed, dead = await pipe.execute(raise_on_error=False)
        for value in (*per_stream[1::2], delayed, dead):
            if isinstance(value, Exception):
                raise BrokerError(f"could not count queue {queue!r}: {value}")
        ready = in_flight = 0
        for index in range(len(streams)):
            counted = inspect.stream_counts(k.group, *per_stream[2 * index : 2 * index + 2])
            ready += counted[0]
            in_flight += counted[1]
        return QueueCounts(ready=ready, in_flight=in_flight, delayed=int(delayed), dead=int(dead))

    async def delete_queue(self, queue: str) -> None:
        """Delete every key of ``queue`` (messages of every priority, delayed messages, dead
        letters, the consumer groups, consumers' presence, unique keys' claims) and take it
        out of the queue registry (the ``delete_queue`` capability).

        For tests and tear-down; consumers of the queue must be closed first.
        """
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"delete queue {queue!r}"):
            claims = await self.client.zrange(k.uniques, 0, -1)
            levels = [k.at_level(level).stream for level in range(1, 10)]
            await self.client.delete(
                k.stream, *levels, k.levels, k.delayed, k.dead, k.consumers, k.uniques, *claims
            )
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
