"""Collects conformance outcomes per guarantee and prints them as a table."""

from __future__ import annotations

import shutil
from collections.abc import Generator
from typing import Any, Final

import attrs
import pytest

from chicory.testing.guarantees import MARKER

__all__ = ["GuaranteeResult", "ResultCollector", "format_table"]

_ID_KEY: Final = "chicory_guarantee"
_LEVEL_KEY: Final = "chicory_level"


@attrs.define(kw_only=True)
class GuaranteeResult:
    """The outcome of one conformance test.

    Attributes:
        nodeid: The pytest node id.
        suite: The test class (the author's subclass).
        guarantee: The guarantee id.
        level: ``MUST`` or ``SHOULD``.
        outcome: ``pass``, ``FAIL``, ``ERROR``, ``skip`` or ``xfail`` (a declared known
            failure that did fail).
        detail: The skip reason or the first line of the failure.
        longrepr: The full failure text, for verbose output.
    """

    nodeid: str
    suite: str
    guarantee: str
    level: str
    outcome: str = "pass"
    detail: str = ""
    longrepr: str = ""


def _first_line(text: str) -> str:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("E "):
            return stripped[2:].strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


class ResultCollector:
    """A pytest plugin object that records the outcome of every conformance test.

    Args:
        summary: Print the table at the end of the terminal summary.
    """

    def __init__(self, *, summary: bool) -> None:
        self.summary = summary
        self.results: dict[str, GuaranteeResult] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Tag the reports of conformance tests with their guarantee id and level."""
        report = yield
        marker = item.get_closest_marker(MARKER)
        if marker is not None and len(marker.args) >= 2:
            gid, level = str(marker.args[0]), str(marker.args[1])
            report.user_properties.append((_ID_KEY, gid))
            report.user_properties.append((_LEVEL_KEY, level))
            if report.failed:
                doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").splitlines()
                promise = doc[0].strip() if doc else ""
                report.sections.append(
                    ("Chicory guarantee", f"{gid} ({level}) is violated: {promise}")
                )
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
            )
            self.results[report.nodeid] = result
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
            result.detail = _first_line(report.longreprtext)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Print the per-guarantee table if any conformance test ran."""
        if self.summary and self.results:
            terminalreporter.write_sep("=", "Chicory conformance")
            terminalreporter.write_line(format_table(list(self.results.values())))


def format_table(results: list[GuaranteeResult], *, width: int | None = None) -> str:
    """Render results as a table, one guarantee per line, plus a total line.

    Args:
        results: The outcomes to show.
        width: Line width that details are cut to (default: the terminal's, at least 100).
    """
    if width is None:
        width = max(100, shutil.get_terminal_size((160, 24)).columns)
    if not results:
        return "no conformance test ran"
    id_w = max(len("guarantee"), *(len(r.guarantee) for r in results))
    suite_w = max(len("suite"), *(len(r.suite) for r in results))
    head = f"{'suite':<{suite_w}}  {'guarantee':<{id_w}}  {'level':<6}  {'result':<6}  detail"
    lines = [head, "-" * min(width, len(head) + 20)]
    room = max(40, width - len(head) + len("detail"))
    for r in sorted(results, key=lambda x: (x.suite, x.guarantee)):
        detail = r.detail if len(r.detail) <= room else r.detail[: room - 3] + "..."
        lines.append(
            f"{r.suite:<{suite_w}}  {r.guarantee:<{id_w}}  {r.level:<6}  {r.outcome:<6}  {detail}"
        )
    totals: dict[str, int] = {}
    for r in results:
        totals[r.outcome] = totals.get(r.outcome, 0) + 1
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(totals.items())))
    return "\n".join(lines)
