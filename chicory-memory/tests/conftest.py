"""Fixtures for the memory broker tests: a manual clock, so leases and delays need no sleeps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chicory.clock import ManualClock
from chicory_memory.broker import MemoryBroker

LEASE = 10.0


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when a test advances it."""
    return ManualClock()


@pytest.fixture
async def broker(clock: ManualClock) -> AsyncIterator[MemoryBroker]:
    """A connected broker on the manual clock, with a 10 s lease."""
    async with MemoryBroker(lease_seconds=LEASE, clock=clock) as connected:
        yield connected
