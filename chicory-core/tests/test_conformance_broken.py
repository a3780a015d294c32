"""The conformance suite can fail: deliberately broken brokers fail the guarantees they break.

Each broken broker is a thin wrapper around the memory broker with one defect. The suite runs
against it in a throw-away pytest project (``pytester``), exactly as a plugin author would run
it, and the test checks which guarantee ids failed. The unbroken wrapper is the control: it
passes the same selection (``test_conformance_control.py``), so every failure is caused by
the defect.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

BROKERS = """
import asyncio
import os
from datetime import datetime

import pytest
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker



def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Delivery:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def ack(self):
        if defect() not in ("noop_ack", "duplicates"):
            await self.inner.ack()

    async def nack(self, *, requeue=True, delay=None):
        if defect() == "delays_ignored":
            delay = None
        await self.inner.nack(requeue=requeue, delay=delay)

    async def extend_lease(self, seconds=None):
        if defect() != "extend_ignored":
            await self.inner.extend_lease(seconds)

    async def retry(self, body, headers, *, not_before):
        if defect() == "delays_ignored":
            not_before = None
        await self.inner.retry(body, headers, not_before=not_before)


class Consumer:
    def __init__(self, inner):
        self.inner = inner

    async def fetch(self, max_count, timeout):
        got = await self.inner.fetch(max_count, timeout)
        if defect() == "duplicates":  # hand it straight back: the next consumer gets it too
            for delivery in got:
                await delivery.nack(requeue=True)
        return [Delivery(d) for d in got]

    async def ack_many(self, deliveries):
        if defect() in ("noop_ack", "duplicates"):
            for delivery in deliveries:
                await delivery.ack()
            return []
        lost = await self.inner.ack_many([d.inner for d in deliveries])
        if defect() == "lost_lease_unreported":
            return []
        return [d for d in deliveries if any(d.inner is gone for gone in lost)]

    async def extend_leases(self, deliveries):
        if defect() != "extend_ignored":
            await self.inner.extend_leases([d.inner for d in deliveries])

    async def close(self):
        if defect() != "lost_on_close":  # the inner consumer keeps its deliveries until the lease
            await self.inner.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()


class Broker:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def __aenter__(self):
        await self.connect()
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def connect(self):
        if defect() == "loop_bound":  # a client of the first loop it connected on, kept
            if getattr(self, "loop", None) is not None:
                return
            self.loop = asyncio.get_running_loop()
        await self.inner.connect()

    async def close(self):
        if defect() == "loop_bound" and getattr(self, "loop", None) is not None:
            if self.loop is not asyncio.get_running_loop():
                raise RuntimeError("Event loop is closed")  # and forgets nothing
            self.loop = None
        await self.inner.close()

    async def publish(self, queue, body, headers=None, *, not_before=None):
        if defect() == "delays_ignored":
            not_before = None
        loop = getattr(self, "loop", None)
        if defect() == "loop_bound" and loop not in (None, asyncio.get_running_loop()):
            raise RuntimeError("Event loop is closed")
        return await self.inner.publish(queue, body, headers, not_before=not_before)

    def consume(self, queues, *, prefetch):
        return Consumer(self.inner.consume(queues, prefetch=prefetch))


def build(*, lease_seconds, max_deliveries):
    if defect() == "lease_ignored":
        lease_seconds = 3600.0
    return Broker(MemoryBroker(lease_seconds=lease_seconds, max_deliveries=max_deliveries))


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(factory=build, patience=2.0)
"""

SUITES = """
from chicory.testing import (
    BrokerBasicsSuite, BrokerDeliverySuite, BrokerSettlementSuite, WorkerSuite,
)

class TestBasics(BrokerBasicsSuite):
    pass

class TestSettlement(BrokerSettlementSuite):
    pass

class TestDelivery(BrokerDeliverySuite):
    pass

class TestWorker(WorkerSuite):
    pass
"""

# defect -> (tests to run, -k expression; guarantees that must fail)
CASES = {
    "noop_ack": ("ack_removes or ack_many", {"settle.ack_removes", "settle.ack_many"}),
    "lost_on_close": ("redeliver_on_close", {"delivery.redeliver_on_close"}),
    "lease_ignored": (
        "redeliver_on_lease_expiry or at_least_once_crash",
        {"delivery.redeliver_on_lease_expiry", "worker.at_least_once_crash"},
    ),
    "delays_ignored": (
        "delayed_not_before or nack_delay or retry_delay",
        {"delivery.delayed_not_before", "settle.nack_delay", "worker.retry_delay"},
    ),
    "duplicates": ("no_duplicates", {"delivery.no_duplicates"}),
    "extend_ignored": ("lease_extension", {"delivery.lease_extension"}),
    "lost_lease_unreported": ("ack_reports_lost_lease", {"delivery.ack_reports_lost_lease"}),
    "loop_bound": ("new_event_loop", {"broker.new_event_loop"}),
}


def run_suites(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str, keyword: str
) -> tuple[set[str], set[str], pytest.RunResult]:
    monkeypatch.setenv("CHICORY_TEST_DEFECT", defect)
    pytester.makeconftest(BROKERS)
    pytester.makepyfile(test_broken=SUITES)
    result = pytester.runpytest_inprocess(
        "-p", "no:asyncio", "-p", "no:cacheprovider", "-k", keyword, "-rfs"
    )
    failed: set[str] = set()
    passed: set[str] = set()
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        gid = dict(report.user_properties).get("chicory_guarantee")
        if gid is None:
            continue
        if report.failed:
            failed.add(gid)
        elif report.passed and report.when == "call":
            passed.add(gid)
    return failed, passed, result


@pytest.mark.parametrize("defect", sorted(CASES))
def test_broken_broker_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    keyword, expected = CASES[defect]
    failed, _, result = run_suites(pytester, monkeypatch, defect, keyword)
    assert failed == expected, result.stdout.str()
    for gid in expected:
        result.stdout.fnmatch_lines(
            ["*- Chicory guarantee -*", f"{gid} (MUST) is violated: MUST *"]
        )
