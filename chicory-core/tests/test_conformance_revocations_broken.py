"""The revocation guarantees can fail: memory result backends with one defect each fail them.

Like ``test_conformance_delayed_broken.py``: each broken backend runs the ``RevocationSuite``
in a throw-away pytest project (``pytester``), and the test checks which guarantee ids
failed. The control, the same subclass without a defect, passes every one.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BROKERS = """
import contextlib
import os
import time

import pytest
from chicory.testing import ResultBackendHarness
from chicory_memory.results import MemoryResultBackend


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryResultBackend):
    async def revoke(self, task_id, *, ttl):
        if defect() == "shortens":
            self._revoked.pop(task_id, None)
        await super().revoke(task_id, ttl=ttl)

    async def revocations(self):
        if defect() == "never_expire":
            return {t: max(at, time.time() + 60) for t, at in self._revoked.items()}
        return await super().revocations()

    @contextlib.asynccontextmanager
    async def watch_revocations(self):
        async with super().watch_revocations() as pushes:
            if defect() == "no_push":
                self._watchers.clear()
            yield pushes


@pytest.fixture
def chicory_result_backend_harness():
    return ResultBackendHarness(factory=Broken, timeout=10)
"""

SUITES = """
from chicory.testing import RevocationSuite

class TestRevocations(RevocationSuite):
    pass
"""

CASES = {
    "shortens": {"revocation.extended"},
    "never_expire": {"revocation.expires"},
    "no_push": {"revocation.pushed"},
}

ALL = {
    "revocation.recorded",
    "revocation.expires",
    "revocation.pushed",
    "revocation.extended",
}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_revocation_store_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BROKERS, SUITES)
    assert failed == CASES[defect], result.stdout.str()


def test_the_unbroken_subclass_passes_every_revocation_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BROKERS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
