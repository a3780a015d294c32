"""The operators' face of the PostgreSQL broker: counts, queue stats, delayed messages,
unique keys, deleting a queue.

The statements are in :mod:`chicory_postgres.inspect` and :mod:`chicory_postgres.unique`;
these methods are the protocol entry points.
"""

from __future__ import annotations

from collections.abc import Sequence

from chicory.broker import OutgoingMessage, QueueCounts
from chicory.delayed import DelayedPage
from chicory.inspection import QueueStats
from chicory.unique import UniqueClaim
from chicory_postgres import inspect, unique
from chicory_postgres.base import PostgresBrokerBase

__all__ = ["AdminMethods"]


class AdminMethods(PostgresBrokerBase):
    """The counting, inspection, delayed-listing and unique-enqueue methods of
    :class:`~chicory_postgres.broker.PostgresBroker`."""

    async def counts(self, queue: str) -> QueueCounts:
        """Ready, in-flight, delayed and dead counts of ``queue``."""
        stats = (await self.queue_stats([queue]))[0]
        return QueueCounts(
            ready=stats.ready, in_flight=stats.in_flight, delayed=stats.delayed, dead=stats.dead
        )

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue``: its messages of every kind, its dead letters and its name."""
        await inspect.delete_queue(self, queue)
        self._registered.discard(queue)

    # -- inspection (Capabilities.inspection) ------------------------------------------------

    async def queues(self) -> list[str]:
        """Every queue in use, sorted."""
        return await inspect.queues(self)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts of each of ``queues`` (in that order) in one query."""
        return await inspect.queue_stats(self, queues)

    # -- delayed listing (Capabilities.delayed_listing) ---------------------------------------

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """One page of ``queue``'s delayed messages, soonest due first."""
        return await inspect.delayed_page(self, queue, after=after, limit=limit)

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove a delayed message so it is never delivered; False if not delayed."""
        return await inspect.remove_delayed(self, queue, message_id)

    # -- unique enqueue (Capabilities.unique_enqueue) ------------------------------------------

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
        """Publish ``message`` unless ``key`` is held in ``queue``, in one statement."""
        return await unique.publish_unique(
            self, queue, message, key=key, holder=holder, hold=hold, keep=keep
        )

    async def publish_unique_within(
        self,
        connection: object,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """:meth:`publish_unique` on the caller's connection, inside its open transaction:
        a rollback frees the key with the message (connections as
        :meth:`~chicory_postgres.publishing.PublishMethods.publish_within`)."""
        return await unique.publish_unique(
            self, queue, message, key=key, holder=holder, hold=hold, keep=keep, within=connection
        )

    async def release_unique(self, queue: str, key: str, holder: str) -> bool:
        """End ``holder``'s claim on ``key`` (at once, or when its keep time ends)."""
        return await unique.release_unique(self, queue, key, holder)

    async def unique_holder(self, queue: str, key: str) -> str | None:
        """Who holds ``key`` in ``queue`` now, or ``None``."""
        return await unique.unique_holder(self, queue, key)
