"""Injectable time, so brokers and tests can control leases and delays without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "to_epoch", "utcnow"]


def utcnow() -> datetime:
    """Return the current aware-UTC time."""
    return datetime.now(UTC)


def to_epoch(moment: datetime) -> float:
    """Return ``moment`` as seconds since the epoch; naive datetimes are rejected.

    Raises:
        ValueError: ``moment`` has no timezone.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; pass an aware datetime (e.g. datetime.now(UTC))")
    return moment.timestamp()


class Clock(Protocol):
    """A source of wall-clock time in seconds since the epoch."""

    def time(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Return ``time.time()``."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to; for tests.

    Args:
        start: The initial time in seconds since the epoch.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def time(self) -> float:
        """Return the current manual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
