"""The inspection guarantees can fail: memory brokers with one inspection defect fail them.

Like ``test_conformance_broken.py``, each broken broker runs the suite in a throw-away pytest
project (``pytester``), as a plugin author would, and the test checks which guarantee ids
failed. The control, the same subclass without a defect, passes every inspection guarantee.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BROKERS = """
import os

import attrs
import pytest
from chicory.inspection import DeadLetterPage
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryBroker):
    async def queues(self):
        names = await super().queues()
        if defect() == "lists_only_published":
            names = [n for n in names if (await self.counts(n)).ready]
        return names

    async def queue_stats(self, queues):
        stats = await super().queue_stats(queues)
        if defect() == "stats_sorted":
            stats.sort(key=lambda s: s.queue, reverse=True)
        if defect() == "no_consumers":
            stats = [attrs.evolve(s, consumers=0) for s in stats]
        return stats

    async def dead_letter_page(self, queue, *, after=None, limit=100, since=None, until=None,
                               newest_first=False):
        if defect() == "cursor_ignored":
            after = None
        if defect() == "time_ignored":
            since = until = None
        if defect() == "order_ignored":
            newest_first = False
        return await super().dead_letter_page(
            queue, after=after, limit=limit, since=since, until=until, newest_first=newest_first
        )

    async def requeue_dead_letter(self, queue, dead_letter_id, body, headers):
        if defect() == "requeue_keeps_letter":
            if await self.get_dead_letter(queue, dead_letter_id) is None:
                return False
            await self.publish(queue, body, headers)
            return True
        return await super().requeue_dead_letter(queue, dead_letter_id, body, headers)


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: Broken(
            lease_seconds=lease_seconds, max_deliveries=max_deliveries
        ),
        patience=2.0,
    )
"""

SUITES = """
from chicory.testing import InspectionSuite

class TestInspection(InspectionSuite):
    pass
"""

CASES = {
    "lists_only_published": {"inspection.queues_listed"},
    "stats_sorted": {"inspection.queue_stats"},
    "no_consumers": {"inspection.consumers"},
    "cursor_ignored": {"inspection.page_cursor", "inspection.page_newest_first"},
    "time_ignored": {"inspection.page_time_range"},
    "order_ignored": {"inspection.page_newest_first", "inspection.page_time_range"},
    "requeue_keeps_letter": {"inspection.requeue_dead_letter"},
}

ALL = {
    "inspection.queues_listed",
    "inspection.queue_stats",
    "inspection.consumers",
    "inspection.oldest_ready",
    "inspection.page_cursor",
    "inspection.page_newest_first",
    "inspection.page_time_range",
    "inspection.get_dead_letter",
    "inspection.requeue_dead_letter",
}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_inspection_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BROKERS, SUITES)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_inspection_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BROKERS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
