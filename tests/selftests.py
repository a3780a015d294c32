"""The conformance suite's self-tests: run it on a deliberately broken broker or backend in a
throw-away pytest project, as a plugin author would, and read which guarantees failed."""

from __future__ import annotations

import pytest

__all__ = ["run_broken_suite"]


def run_broken_suite(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    defect: str,
    conftest: str,
    suites: str,
    *options: str,
    harness: str | None = None,
) -> tuple[set[str], set[str], pytest.RunResult]:
    """Run ``suites`` against the ``conftest``'s broker or backend with ``defect`` on
    (``CHICORY_TEST_DEFECT``; ``harness`` sets ``CHICORY_TEST_HARNESS``), passing pytest
    ``options``; return the guarantee ids that failed, those that passed, and the run."""
    monkeypatch.setenv("CHICORY_TEST_DEFECT", defect)
    if harness is not None:
        monkeypatch.setenv("CHICORY_TEST_HARNESS", harness)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_broken=suites)
    result = pytester.runpytest_inprocess(
        "-p", "no:asyncio", "-p", "no:cacheprovider", *options, "-rfs"
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
