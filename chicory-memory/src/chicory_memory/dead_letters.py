"""The dead-letter face of the memory broker: list, page, read, replay, requeue, delete, purge.

A queue's dead letters live in its ``QueueState.dead`` dict, oldest first; how they are
recorded and kept within the dead-letter limits is :mod:`chicory_memory.dead`. Every read
first drops those over the limits; paging is in :mod:`chicory_memory.inspect`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime

from chicory.broker import DeadLetter
from chicory.inspection import DeadLetterPage
from chicory_memory import inspect
from chicory_memory.base import BrokerBase
from chicory_memory.model import QueueState

__all__ = ["DeadLetterMethods"]


class DeadLetterMethods(BrokerBase):
    """The dead-letter methods of :class:`~chicory_memory.broker.MemoryBroker`."""

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """List up to ``limit`` dead letters of ``queue``, oldest first."""
        self._check_connected()
        state = self._trimmed(queue)
        if state is None or limit <= 0:
            return []
        return list(itertools.islice(state.dead.values(), limit))

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on ``queue`` as a new ready message; False if unknown."""
        self._check_connected()
        return self._store.replay(queue, dead_letter_id, self._clock.time())

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter; False if unknown."""
        self._check_connected()
        state = self._store.queues.get(queue)
        return state is not None and state.dead.pop(dead_letter_id, None) is not None

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many there were."""
        self._check_connected()
        state = self._store.queues.get(queue)
        if state is None:
            return 0
        count = len(state.dead)
        state.dead.clear()
        return count

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
        """One page of the dead letters of ``queue``, past ``after``, within the times.

        Raises:
            ValueError: ``limit`` is below 1, or a time is naive.
        """
        self._check_connected()
        return inspect.dead_letter_page(
            self._trimmed(queue),
            after=after,
            limit=limit,
            since=since,
            until=until,
            newest_first=newest_first,
        )

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter of ``queue``, or ``None``."""
        self._check_connected()
        state = self._trimmed(queue)
        return state.dead.get(dead_letter_id) if state is not None else None

    def _trimmed(self, queue: str) -> QueueState | None:
        """The state of ``queue`` with its dead letters over the limits dropped."""
        state = self._store.queues.get(queue)
        if state is not None:
            self._store.dead_letters.trim(state, self._clock.time())
        return state

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Replace a dead letter by a new ready message with ``body`` and ``headers``.

        Raises:
            MessageTooLargeError: ``body`` is over ``max_body_bytes`` (the letter stays).
        """
        self._check_connected()
        store = self._store
        state = store.queues.get(queue)
        if state is None or dead_letter_id not in state.dead:
            return False
        store.check_body(body)
        del state.dead[dead_letter_id]
        store.enqueue(state, body, headers, None, self._clock.time())
        return True
