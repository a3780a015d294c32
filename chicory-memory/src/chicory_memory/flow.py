"""Rate-limit turns and concurrency permits of the memory broker (``flow_control``).

The reference implementation of :class:`chicory.flow.FlowControl`, on the broker's clock:

* a rate key keeps its starts of the last period (a sliding window, sorted), the end of its
  waiting line and the turns of the holders in line;
* a permit key keeps its holders and when each permit expires.

Everything is plain dicts changed by synchronous calls, so each operation is atomic.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from chicory.clock import Clock
from chicory.flow import turn_slack
from chicory_memory.base import BrokerBase

__all__ = ["TURN_GRACE", "FlowMethods", "FlowState"]

TURN_GRACE = 3600.0
"""Seconds after its time that an unused reserved turn is dropped."""


class FlowState:
    """The flow-control state of one memory broker.

    Args:
        clock: The broker's clock.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._starts: dict[str, list[float]] = {}
        self._line: dict[str, float] = {}
        self._turns: dict[str, dict[str, float]] = {}
        self._permits: dict[str, dict[str, float]] = {}

    def take_turn(self, key: str, holder: str, limit: int, period: float) -> float:
        """See :meth:`chicory.flow.FlowControl.take_turn`."""
        now = self._clock.time()
        turns = self._turns.setdefault(key, {})
        for name in [n for n, at in turns.items() if at + TURN_GRACE < now]:
            del turns[name]
        starts = self._starts.setdefault(key, [])
        del starts[: bisect.bisect_right(starts, now - period)]
        turn = turns.pop(holder, None)
        if turn is not None and turn > now:
            turns[holder] = turn
            return turn - now
        line = self._line.get(key, 0.0)
        if (turn is not None or line <= now) and len(starts) < limit:
            slack = turn_slack(period / limit)
            bisect.insort(starts, now if turn is None else max(turn, now - slack))
            return 0.0
        at = max(line, now)
        if len(starts) >= limit:
            at = max(at, starts[len(starts) - limit] + period)
        turns[holder] = at
        self._line[key] = at + period / limit
        return at - now

    def acquire_permit(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        """See :meth:`chicory.flow.FlowControl.acquire_permit`."""
        now = self._clock.time()
        permits = self._live(key, now)
        if holder not in permits and len(permits) >= limit:
            return False
        permits[holder] = now + ttl
        return True

    def renew_permits(self, key: str, holders: Sequence[str], ttl: float) -> None:
        """See :meth:`chicory.flow.FlowControl.renew_permits`."""
        now = self._clock.time()
        permits = self._live(key, now)
        for holder in holders:
            if holder in permits:
                permits[holder] = now + ttl

    def release_permit(self, key: str, holder: str) -> None:
        """See :meth:`chicory.flow.FlowControl.release_permit`."""
        self._live(key, self._clock.time()).pop(holder, None)

    def _live(self, key: str, now: float) -> dict[str, float]:
        """The unexpired permits of ``key`` (expired ones are dropped)."""
        permits = self._permits.setdefault(key, {})
        for name in [n for n, until in permits.items() if until <= now]:
            del permits[name]
        return permits


class FlowMethods(BrokerBase):
    """The ``flow_control`` methods of :class:`~chicory_memory.broker.MemoryBroker`."""

    _flow: FlowState

    async def take_turn(self, key: str, holder: str, *, limit: int, period: float) -> float:
        """Ask to start one run under the rate limit ``key`` (see
        :meth:`chicory.flow.FlowControl.take_turn`)."""
        self._check_connected()
        return self._flow.take_turn(key, holder, limit, period)

    async def acquire_permit(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Take one of the ``limit`` permits of ``key`` for ``holder`` (see
        :meth:`chicory.flow.FlowControl.acquire_permit`)."""
        self._check_connected()
        return self._flow.acquire_permit(key, holder, limit, ttl)

    async def renew_permits(self, key: str, holders: Sequence[str], *, ttl: float) -> None:
        """Renew the permits of ``key`` held by ``holders`` for ``ttl`` seconds."""
        self._check_connected()
        self._flow.renew_permits(key, holders, ttl)

    async def release_permit(self, key: str, holder: str) -> None:
        """Free the permit of ``key`` held by ``holder``."""
        self._check_connected()
        self._flow.release_permit(key, holder)
