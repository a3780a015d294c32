"""The dead-letter face of the PostgreSQL broker: list, page, read, replay, requeue, delete,
purge.

The statements are in :mod:`chicory_postgres.inspect`; these methods are the protocol entry
points.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from chicory.broker import DeadLetter
from chicory.inspection import DeadLetterPage
from chicory_postgres import inspect
from chicory_postgres.base import PostgresBrokerBase

__all__ = ["DeadLetterMethods"]


class DeadLetterMethods(PostgresBrokerBase):
    """The dead-letter methods of :class:`~chicory_postgres.broker.PostgresBroker`."""

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters of ``queue``, oldest first."""
        if limit < 1:
            return []
        return (await self.dead_letter_page(queue, limit=limit)).letters

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back as a new ready message (one statement). False if unknown."""
        return await inspect.replay(self, queue, dead_letter_id, None)

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter. False if unknown."""
        return await inspect.delete_dead_letter(self, queue, dead_letter_id)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""
        return await inspect.purge_dead_letters(self, queue)

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
        """One page of ``queue``'s dead letters (see :class:`chicory.inspection.Inspection`)."""
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
        """One dead letter of ``queue``, or ``None``."""
        return await inspect.get_dead_letter(self, queue, dead_letter_id)

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Swap a dead letter for a new ready message with ``body`` and ``headers``."""
        self.check_body(body)
        return await inspect.replay(self, queue, dead_letter_id, (body, headers))
