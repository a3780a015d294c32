"""Injectable time, so brokers and tests can control leases and delays without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock", "VirtualClock", "to_epoch", "utcnow"]


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


class VirtualClock:
    """The real clock plus an offset that only moves forward when told to; for tests.

    Unlike :class:`ManualClock` it keeps running: a ``countdown=60`` computed from the real
    time is due once the clock is advanced by 60 s, however long the test took in between.

    Args:
        offset: Seconds added to the real time at the start.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of the real one."""
        return self._offset

    def time(self) -> float:
        """Return ``time.time()`` plus the offset."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._offset += seconds

    def advance_to(self, moment: float) -> None:
        """Move time forward to ``moment`` (seconds since the epoch); no-op if it is past."""
        ahead = moment - self.time()
        if ahead > 0:
            self._offset += ahead
