"""The admin layer on a broker without the ``inspection`` capability.

Such a broker offers only the core protocol: ``counts(queue)`` and
``dead_letters(queue, limit=...)`` (oldest first, no cursor). :class:`CoreOnlyInspector`
answers the inspection reads from those, within limits it states:

* the queues are those the app declares and the live workers consume (the broker cannot
  list its own);
* consumers and the age of the oldest ready message are unknown (``None``);
* dead letters are read whole, up to :data:`MAX_READ` per queue, and paged in memory, so
  listings past that many letters of one queue are cut short.

What cannot be emulated raises :class:`~chicory.errors.CapabilityError`: replacing a dead
letter's body (a replay that restarts the retry budget; a verbatim replay works).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

from chicory.broker import Broker, DeadLetter
from chicory.inspection import DeadLetterPage, QueueStats, missing_inspection

__all__ = ["MAX_READ", "CoreOnlyInspector"]

MAX_READ: Final = 10_000
"""Most dead letters of one queue read from a broker without the inspection capability."""


class CoreOnlyInspector:
    """The inspection reads of :class:`~chicory.inspection.InspectableBroker`, emulated.

    Args:
        broker: A broker offering only the core protocol.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def queues(self) -> list[str]:
        """Nothing: the broker cannot list queues (the caller adds the ones it knows)."""
        return []

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts of each queue, with consumers and oldest age unknown."""
        out = []
        for queue in queues:
            counts = await self.broker.counts(queue)
            out.append(
                QueueStats(
                    queue=queue,
                    ready=counts.ready,
                    in_flight=counts.in_flight,
                    delayed=counts.delayed,
                    dead=counts.dead,
                )
            )
        return out

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
        """A page cut from the first :data:`MAX_READ` dead letters of ``queue``."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        letters = await self.broker.dead_letters(queue, limit=MAX_READ)
        if newest_first:
            letters.reverse()
        if after is not None:
            ids = [letter.id for letter in letters]
            letters = letters[ids.index(after) + 1 :] if after in ids else []
        chosen = [
            letter
            for letter in letters
            if (since is None or letter.dead_at >= since)
            and (until is None or letter.dead_at < until)
        ]
        page = chosen[:limit]
        return DeadLetterPage(letters=page, next_after=page[-1].id if len(chosen) > limit else None)

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """The letter, if it is among the first :data:`MAX_READ` of ``queue``."""
        for letter in await self.broker.dead_letters(queue, limit=MAX_READ):
            if letter.id == dead_letter_id:
                return letter
        return None

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Cannot be done on the core protocol alone.

        Raises:
            CapabilityError: always.
        """
        raise missing_inspection(self.broker, "a replay that restarts the retry budget")
