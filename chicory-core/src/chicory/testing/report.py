"""Collects conformance outcomes per guarantee (and per broker) from pytest's reports."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final

import pytest

from chicory.testing.guarantees import GUARANTEES, MARKER
from chicory.testing.summary import GuaranteeResult, format_table

__all__ = ["GuaranteeResult", "ResultCollector", "format_table"]

_ID_KEY: Final = "chicory_guarantee"
_LEVEL_KEY: Final = "chicory_level"
_BROKER_KEY: Final = "chicory_broker"
_HARNESS_FIXTURES: Final = ("chicory_broker_harness", "chicory_result_backend_harness")

BROKER_SUITES: Final = (
    "BrokerBasicsSuite",
    "BrokerSettlementSuite",
    "BrokerDeliverySuite",
    "DeadLetterSuite",
    "BrokerStatefulSuite",
    "WorkerSuite",
)
"""The suites every broker plugin subclasses (``docs/conformance.md``)."""


def _first_line(text: str) -> str:
    """The first line of a failure's message, without the exception's name when it is a
    plain assertion or ``pytest.fail`` (the message says what went wrong in words)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((line[2:].strip() for line in lines if line.startswith("E ")), None)
    if first is None:
        first = lines[0] if lines else ""
    return first.removeprefix("Failed: ").removeprefix("AssertionError: ")


def _harness_name(item: pytest.Item) -> str:
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    for fixture in _HARNESS_FIXTURES:
        harness = funcargs.get(fixture)
        if harness is not None and hasattr(harness, "display_name"):
            try:
                return str(harness.display_name())
            except Exception:  # a factory that cannot build: the test reports that
                return ""
    return ""


class ResultCollector:
    """A pytest plugin object that records the outcome of every conformance test.

    Args:
        summary: Print the table at the end of the terminal summary.
    """

    def __init__(self, *, summary: bool) -> None:
        self.summary = summary
        self.results: dict[str, GuaranteeResult] = {}
        self.collected_suites: set[str] = set()

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        """Note which suites were collected (before any ``-k`` deselection)."""
        marker = item.get_closest_marker(MARKER)
        if marker is not None and marker.args and marker.args[0] in GUARANTEES:
            self.collected_suites.add(GUARANTEES[marker.args[0]].area)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Tag the reports of conformance tests with their guarantee, level and broker."""
        report = yield
        marker = item.get_closest_marker(MARKER)
        if marker is not None and len(marker.args) >= 2:
            gid, level = str(marker.args[0]), str(marker.args[1])
            report.user_properties.append((_ID_KEY, gid))
            report.user_properties.append((_LEVEL_KEY, level))
            report.user_properties.append((_BROKER_KEY, _harness_name(item)))
            if report.failed:
                known = GUARANTEES.get(gid)
                promise = known.summary if known is not None else ""
                if report.when == "call":
                    text = f"{gid} ({level}) is violated: {promise}"
                else:
                    text = (
                        f"{gid} ({level}) could not be checked (this says nothing about the "
                        f"broker yet): fix what the error above names. It promises: {promise}"
                    )
                report.sections.append(("Chicory guarantee", text))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Fold the setup/call/teardown reports of a conformance test into one outcome."""
        props = dict(report.user_properties)
        gid = props.get(_ID_KEY)
        if gid is None:
            return
        result = self.results.get(report.nodeid)
        if result is None:
            parts = report.nodeid.split("::")
            result = GuaranteeResult(
                nodeid=report.nodeid,
                suite=parts[-2] if len(parts) >= 2 else "",
                guarantee=str(gid),
                level=str(props.get(_LEVEL_KEY, "")),
                broker=str(props.get(_BROKER_KEY, "")),
            )
            self.results[report.nodeid] = result
        if not result.broker and props.get(_BROKER_KEY):
            result.broker = str(props[_BROKER_KEY])
        if report.skipped and hasattr(report, "wasxfail"):
            result.outcome = "xfail"
            result.detail = str(report.wasxfail).removeprefix(f"{gid}: ")
        elif report.skipped:
            result.outcome = "skip"
            longrepr: Any = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            result.detail = str(reason).removeprefix("Skipped: ").removeprefix(f"{gid}: ")
        elif report.failed and result.outcome in ("pass", "skip"):
            result.outcome = "FAIL" if report.when == "call" else "ERROR"
            result.longrepr = report.longreprtext
            detail = _first_line(report.longreprtext)
            for prefix in (f"{gid}: ", f"{gid} ({result.level}) ", "cannot be checked: "):
                detail = detail.removeprefix(prefix)
            result.detail = detail

    def missing_suites(self) -> list[str]:
        """Broker suites no test was collected from, when others were (forgotten subclasses)."""
        if not self.collected_suites & set(BROKER_SUITES):
            return []
        return [suite for suite in BROKER_SUITES if suite not in self.collected_suites]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the per-guarantee table if any conformance test ran."""
        if self.summary and self.results:
            terminalreporter.write_sep("=", "Chicory conformance")
            terminalreporter.write_line(format_table(list(self.results.values())))
            missing = self.missing_suites()
            if missing:
                terminalreporter.write_line(
                    "not run, so not checked: the guarantees of "
                    + ", ".join(missing)
                    + " (no subclass of them was collected; see docs/conformance.md)"
                )
