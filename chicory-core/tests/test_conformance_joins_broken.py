"""The group-join guarantees can fail: memory result backends with one defect each fail them.

Like ``test_conformance_revocations_broken.py``: each broken backend runs the
``GroupJoinSuite`` in a throw-away pytest project (``pytester``), and the test checks which
guarantee ids failed. The control, the same subclass without a defect, passes every one.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BACKENDS = """
import os

import anyio
import pytest
from chicory.testing import ResultBackendHarness
from chicory_memory.results import MemoryResultBackend


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryResultBackend):
    counts = {}

    def live(self, group_id):
        members, expires_at = self._joins.get(group_id, ({}, 0.0))
        return dict(members) if expires_at > self._clock.time() else {}

    async def join(self, group_id, index, size, data, *, ttl):
        if defect() == "counts_calls":  # a counter of calls: a member joined twice counts twice
            count = len(self.live(group_id)) and self.counts.get(group_id, 0)
            await super().join(group_id, index, size, data, ttl=ttl)
            self.counts[group_id] = count + 1
            members = self.live(group_id)
            return [members.get(i) for i in range(size)] if count + 1 >= size else None
        if defect() == "read_then_write":  # the check and the write are two round trips
            complete = len(self.live(group_id) | {index: data}) >= size
            await anyio.sleep(0.01)
            await super().join(group_id, index, size, data, ttl=ttl)
            members = self.live(group_id)
            return [members.get(i) for i in range(size)] if complete else None
        if defect() == "never_expire":
            ttl = 3600.0
        return await super().join(group_id, index, size, data, ttl=ttl)


@pytest.fixture
def chicory_result_backend_harness():
    return ResultBackendHarness(factory=Broken, timeout=10)
"""

SUITES = """
from chicory.testing import GroupJoinSuite

class TestGroupJoins(GroupJoinSuite):
    pass
"""

CASES = {
    "counts_calls": {"join.member_once"},
    "read_then_write": {"join.atomic"},
    "never_expire": {"join.expires"},
}

ALL = {"join.completes", "join.member_once", "join.atomic", "join.groups_apart", "join.expires"}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_join_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BACKENDS, SUITES)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_join_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BACKENDS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
