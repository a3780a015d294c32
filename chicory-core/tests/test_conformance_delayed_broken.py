"""The delayed-listing guarantees can fail: memory brokers with one defect each fail them.

Like ``test_conformance_inspection_broken.py``: each broken broker runs the ``DelayedSuite``
in a throw-away pytest project (``pytester``), and the test checks which guarantee ids
failed. The control, the same subclass without a defect, passes every one.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BROKERS = """
import os

import attrs
import pytest
from chicory.delayed import DelayedPage
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryBroker):
    async def delayed_page(self, queue, *, after=None, limit=100):
        if defect() == "cursor_ignored":
            after = None
        page = await super().delayed_page(queue, after=after, limit=limit)
        if defect() == "latest_first":
            page = attrs.evolve(page, messages=page.messages[::-1])
        return page

    async def remove_delayed(self, queue, message_id):
        if defect() == "remove_only_says_so":
            page = await super().delayed_page(queue, limit=1000)
            return any(m.id == message_id for m in page.messages)
        if defect() == "remove_any_queue":
            for name in await self.queues():
                if await super().remove_delayed(name, message_id):
                    return True
            return False
        return await super().remove_delayed(queue, message_id)


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
from chicory.testing import DelayedSuite

class TestDelayed(DelayedSuite):
    pass
"""

CASES = {
    "cursor_ignored": {"delayed.page_cursor"},
    "latest_first": {"delayed.listed_soonest_first", "delayed.page_cursor"},
    "remove_only_says_so": {"delayed.remove", "delayed.removed_never_delivered"},
    "remove_any_queue": {"delayed.remove"},
}

ALL = {
    "delayed.listed_soonest_first",
    "delayed.page_cursor",
    "delayed.remove",
    "delayed.removed_never_delivered",
    "delayed.due_not_listed",
}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_delayed_listing_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BROKERS, SUITES)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_delayed_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BROKERS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
