"""The flow-control and priority guarantees can fail: memory brokers with one defect each.

Like ``test_conformance_delayed_broken.py``: each broken broker runs the ``FlowControlSuite``
in a throw-away pytest project (``pytester``), and the test checks which guarantee ids
failed. The control, the same subclass without a defect, passes every one it runs.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BROKERS = """
import os

import pytest
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryBroker):
    async def take_turn(self, key, holder, *, limit, period):
        if defect() == "no_reservation":
            wait = await super().take_turn(key, "anyone", limit=limit, period=period)
            return 0.0 if wait == 0 else period / limit
        if defect() == "one_key":
            key = "all"
        if defect() == "turn_for_anyone" and holder != "a":
            holder = "b"
        if defect() == "late_turns_start":
            turns = self._flow._turns.get(key, {})
            now = self._clock.time()
            if holder in turns and turns[holder] <= now:
                del turns[holder]
                return 0.0
        if defect() == "window_ignored":
            limit = 1_000_000
        return await super().take_turn(key, holder, limit=limit, period=period)

    async def acquire_permit(self, key, holder, *, limit, ttl):
        if defect() == "off_by_one":
            limit += 1
        if defect() == "no_expiry":
            ttl = 3600
        return await super().acquire_permit(key, holder, limit=limit, ttl=ttl)

    async def renew_permits(self, key, holders, *, ttl):
        if defect() == "renew_ignored":
            return
        await super().renew_permits(key, holders, ttl=ttl)

    async def release_permit(self, key, holder):
        if defect() == "release_ignored":
            return
        await super().release_permit(key, holder)

    async def publish(self, queue, body, headers=None, *, not_before=None):
        if defect() == "priorities_ignored" and headers:
            headers = {k: v for k, v in headers.items() if k != "chicory-priority"}
            headers["x-was"] = "dropped"
        if defect() == "lowest_first" and headers and "chicory-priority" in headers:
            headers = {**headers, "chicory-priority": str(9 - int(headers["chicory-priority"]))}
        return await super().publish(queue, body, headers, not_before=not_before)


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
from chicory.testing import FlowControlSuite

class TestFlow(FlowControlSuite):
    pass
"""

CASES = {
    "no_reservation": {
        "flow.turns_spaced",
        "flow.turn_kept",
        "flow.window",
        "flow.window_never_exceeded",
    },
    "late_turns_start": {"flow.window_never_exceeded"},
    "window_ignored": {
        "flow.turns_spaced",
        "flow.turn_kept",
        "flow.window",
        "flow.window_never_exceeded",
    },
    "one_key": {"flow.turns_per_key"},
    "turn_for_anyone": {
        "flow.turns_spaced",
        "flow.turn_kept",
        "flow.window",
        "flow.window_never_exceeded",
    },
    "off_by_one": {"flow.permits_limit", "flow.permits_expire"},
    "no_expiry": {"flow.permits_expire"},
    "renew_ignored": {"flow.permits_expire"},
    "release_ignored": {"flow.permits_limit", "flow.permits_expire"},
    "priorities_ignored": {"priority.highest_first", "priority.requeued_and_due"},
    "lowest_first": {"priority.highest_first", "priority.requeued_and_due"},
}

ALL = {
    "flow.turns_spaced",
    "flow.turn_kept",
    "flow.window",
    "flow.window_never_exceeded",
    "flow.turns_per_key",
    "flow.permits_limit",
    "flow.permits_expire",
    "priority.highest_first",
    "priority.requeued_and_due",
    "priority.no_header_fifo",
}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_flow_control_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BROKERS, SUITES)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_flow_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BROKERS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
