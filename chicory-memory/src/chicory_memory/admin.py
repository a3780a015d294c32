"""The administrative face of the memory broker: counts, inspection, delayed listing, deletion.

Reads for tools and operators (``counts``, ``queues``, ``queue_stats``, ``delayed_page``;
the ``inspection`` and ``delayed_listing`` capabilities) and the changes they may make
(``remove_delayed``, ``delete_queue``). The reads themselves are in
:mod:`chicory_memory.inspect`.
"""

from __future__ import annotations

from collections.abc import Sequence

from chicory.broker import QueueCounts
from chicory.delayed import DelayedPage
from chicory.inspection import QueueStats
from chicory_memory import inspect
from chicory_memory.base import BrokerBase

__all__ = ["AdminMethods"]


class AdminMethods(BrokerBase):
    """The counting, inspection and queue-management methods of
    :class:`~chicory_memory.broker.MemoryBroker`."""

    async def counts(self, queue: str) -> QueueCounts:
        """Return the counts of ``queue`` as of the clock's current time."""
        self._check_connected()
        return self._store.counts(queue, self._clock.time())

    def next_due(self, queues: Sequence[str]) -> float | None:
        """When the earliest delayed message of ``queues`` falls due, on the broker's clock.

        Returns:
            Seconds since the epoch, or ``None`` when none of them holds a delayed message.
            What ``chicory.testkit`` moves its clock to when everything else is done.
        """
        states = [self._store.queues.get(name) for name in queues]
        times = [state.delayed[0][0] for state in states if state is not None and state.delayed]
        return min(times) if times else None

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` and every message in it (ready, delayed, dead); its consumers
        must be closed first."""
        self._check_connected()
        self._store.drop(queue)

    # -- the inspection capability ---------------------------------------------------------

    async def queues(self) -> list[str]:
        """Every queue published to, consumed or holding dead letters since the broker was
        created, sorted."""
        self._check_connected()
        return sorted(self._store.queues)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """The stats of each of ``queues`` as of the clock's current time.

        ``consumers`` counts the open consumers of the queue; ``oldest_ready_at`` is when the
        message at the head of the ready queue was published (or fell due).
        """
        self._check_connected()
        return inspect.queue_stats(self._store, queues, self._clock.time())

    # -- the delayed_listing capability ----------------------------------------------------

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """One page of the delayed messages of ``queue``, soonest due first.

        Raises:
            ValueError: ``limit`` is below 1, or ``after`` is not a cursor of this broker.
        """
        self._check_connected()
        return inspect.delayed_page(
            self._store.queues.get(queue), self._clock.time(), after=after, limit=limit
        )

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove one delayed message of ``queue`` (False if it is not delayed there)."""
        self._check_connected()
        state = self._store.queues.get(queue)
        if state is None:
            return False
        self._store.promote(state, self._clock.time())  # a due one is not delayed any more
        return inspect.remove_delayed(state, message_id)
