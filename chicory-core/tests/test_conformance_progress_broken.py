"""The progress-feed guarantees can fail: memory result backends with one defect each fail them.

Like ``test_conformance_revocations_broken.py``: each broken backend runs the
``ProgressFeedSuite`` in a throw-away pytest project (``pytester``), and the test checks which
guarantee ids failed. The control, the same subclass without a defect, passes every one.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BACKENDS = """
import os

import pytest
from chicory.testing import ResultBackendHarness
from chicory_memory.results import MemoryResultBackend


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryResultBackend):
    async def store_progress(self, task_id, data, *, ttl):
        if defect() == "no_push":
            await self.store(task_id, data, final=False, ttl=ttl)
            return
        if defect() == "over_final":
            self._records.pop(task_id, None)
        await super().store_progress(task_id, data, ttl=ttl)


@pytest.fixture
def chicory_result_backend_harness():
    return ResultBackendHarness(factory=Broken, timeout=10)
"""

SUITES = """
from chicory.testing import ProgressFeedSuite

class TestProgressFeed(ProgressFeedSuite):
    pass
"""

CASES = {
    "no_push": {"progress.pushed"},
    "over_final": {"progress.stored"},
}

ALL = {"progress.pushed", "progress.stored"}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_feed_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BACKENDS, SUITES)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_progress_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BACKENDS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
