"""The stateful comparison with the memory broker catches a broker that behaves differently."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


class Delivery:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def ack(self):
        if not BROKEN:
            await self.inner.ack()


class Consumer:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def fetch(self, max_count, timeout):
        return [Delivery(d) for d in await self.inner.fetch(max_count, timeout)]

    async def ack_many(self, deliveries):
        for delivery in deliveries:
            await delivery.ack()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.inner.close()


class Broker:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def consume(self, queues, *, prefetch):
        return Consumer(self.inner.consume(queues, prefetch=prefetch))


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: Broker(
            MemoryBroker(lease_seconds=lease_seconds, max_deliveries=max_deliveries)
        ),
    )
"""

SUITE = """
from chicory.testing import BrokerStatefulSuite


class TestStateful(BrokerStatefulSuite):
    stateful_derandomize = True
"""


@pytest.mark.timeout(600)  # the inner run may take the stateful guarantee's 120 s, and shrink
@pytest.mark.parametrize("broken", [True, False])
def test_the_oracle_tells_a_broken_ack_apart(pytester: pytest.Pytester, broken: bool) -> None:
    pytester.makeconftest(CONFTEST.replace("BROKEN", str(broken)))
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("-p", "no:asyncio")
    if broken:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*AssertionError: counts differ*"])
        result.stdout.fnmatch_lines(["*stateful.matches_memory_oracle (MUST) is violated*"])
        result.stdout.fnmatch_lines(["*stateful.matches_memory_oracle*FAIL*counts differ*"])
    else:
        result.assert_outcomes(passed=1)
