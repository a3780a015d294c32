"""The progress-feed guarantees can fail: memory result backends with one defect each fail them.

Like ``test_conformance_revocations_broken.py``: each broken backend runs the
``ProgressFeedSuite`` in a throw-away pytest project (``pytester``), and the test checks which
guarantee ids failed. The control, the same subclass without a defect, passes every one.
"""

from __future__ import annotations

import pytest

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


def run_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> tuple[set[str], set[str], pytest.RunResult]:
    monkeypatch.setenv("CHICORY_TEST_DEFECT", defect)
    pytester.makeconftest(BACKENDS)
    pytester.makepyfile(test_broken_progress=SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-p", "no:cacheprovider", "-rfs")
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
def test_a_broken_feed_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_suite(pytester, monkeypatch, defect)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_progress_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_suite(pytester, monkeypatch, "none")
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
