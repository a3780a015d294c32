"""The dead-letter face of the Redis broker: list, page, read, replay, requeue, delete, purge.

A queue's dead letters are one stream (``<p>:{q:<queue>}:dead``); every read first drops
those over the dead-letter limits (the ``trim_dead`` script). Paging is in
:mod:`chicory_redis.inspect`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chicory.broker import DeadLetter
from chicory.inspection import DeadLetterPage
from chicory_redis import inspect, scripts
from chicory_redis.base import BrokerBase
from chicory_redis.connection import broker_errors
from chicory_redis.entries import STREAM_ID, dead_letter_from_entry, new_message_id

__all__ = ["DeadLetterMethods"]


class DeadLetterMethods(BrokerBase):
    """The dead-letter methods of :class:`~chicory_redis.broker.RedisBroker`."""

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """List up to ``limit`` dead letters of ``queue``, oldest first (``XRANGE``), after
        dropping those over the dead-letter limits."""
        k = self._keys.queue(queue)
        with broker_errors(self.display_url, f"list dead letters of {queue!r}"):
            call = self._trim_dead_call(k)
            await scripts.run(self.client, call.script, call.keys, call.args)
            entries: Any = await self.client.xrange(k.dead, "-", "+", count=limit)
        return [dead_letter_from_entry(queue, eid, fields) for eid, fields in entries]

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on its queue as a new message, atomically.

        The message keeps its body and headers (so its priority) and gets a new message id
        and a fresh delivery count, at the back of the queue.

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
                (k.dead, k.stream, k.levels),
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
