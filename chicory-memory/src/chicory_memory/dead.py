"""Dead letters of the memory broker: recording them and keeping them bounded.

A queue's dead letters live in ``QueueState.dead`` by id, oldest first. Two limits keep
them from growing without bound, the same as the Redis broker's (this is their
reference):

* ``max_count``: recording one more than that many drops the oldest of the queue;
* ``max_age``: a dead letter older than that many seconds (by the broker's clock) is
  dropped when the queue records another one, and is neither listed nor counted.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Final

from chicory.broker import DeadLetter
from chicory.errors import ConfigurationError
from chicory_memory.model import BODY, HEADERS, Message, QueueState

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MAX_COUNT", "DeadLetters"]

DEFAULT_MAX_COUNT: Final = 10_000
"""Dead letters kept per queue by default."""

DEFAULT_MAX_AGE: Final = 30 * 24 * 3600.0
"""Seconds a dead letter is kept by default (30 days)."""


class DeadLetters:
    """Records dead letters and applies the limits.

    Args:
        max_count: The most dead letters kept per queue, or ``None``.
        max_age: Seconds a dead letter is kept, or ``None``.
        prefix: Start of every dead letter id (unique per broker).

    Raises:
        ConfigurationError: a limit is not positive.
    """

    def __init__(self, *, max_count: int | None, max_age: float | None, prefix: str) -> None:
        if max_count is not None and max_count < 1:
            raise ConfigurationError(
                f"dead_letter_max_count must be at least 1 (or None), got {max_count}"
            )
        if max_age is not None and not max_age > 0:
            raise ConfigurationError(
                f"dead_letter_max_age must be positive (or None), got {max_age}"
            )
        self.max_count = max_count
        self.max_age = max_age
        self._ids = (f"{prefix}-dead-{n}" for n in itertools.count(1))

    def bury(
        self, queue: QueueState, message: Message, reason: str, count: int, now: float
    ) -> None:
        """Record ``message`` as a dead letter of ``queue``, then apply the limits."""
        dead_id = next(self._ids)
        body, headers = message[BODY], message[HEADERS]
        queue.dead[dead_id] = DeadLetter(
            id=dead_id,
            queue=queue.name,
            body=body,
            headers=dict(headers),
            reason=reason,
            delivery_count=count,
            dead_at=datetime.fromtimestamp(now, UTC),
        )
        self.trim(queue, now)

    def trim(self, queue: QueueState, now: float) -> None:
        """Drop the dead letters of ``queue`` over the limits, oldest first."""
        dead = queue.dead
        if self.max_age is not None and dead:
            oldest = datetime.fromtimestamp(now, UTC) - timedelta(seconds=self.max_age)
            expired = list(itertools.takewhile(lambda i: dead[i].dead_at < oldest, dead))
            for dead_id in expired:
                del dead[dead_id]
        if self.max_count is not None and len(dead) > self.max_count:
            for dead_id in list(itertools.islice(dead, len(dead) - self.max_count)):
                del dead[dead_id]
