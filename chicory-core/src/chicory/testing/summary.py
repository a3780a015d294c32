"""The per-guarantee report: one line per guarantee, root causes first, then consequences.

One defect often breaks many guarantees (an ``ack()`` that does nothing fails every test that
acks). Each guarantee names the guarantees it rests on (:attr:`Guarantee.rests_on`); a failure
whose foundation failed too, on the same broker, is a **consequence**: the report lists the
failed foundations (root causes) first, with what went wrong, and then the consequences
grouped by the root cause they follow from.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable

import attrs

from chicory.testing.guarantees import GUARANTEES

__all__ = ["GuaranteeResult", "format_table", "mark_consequences"]

_BAD = ("FAIL", "ERROR")


@attrs.define(kw_only=True)
class GuaranteeResult:
    """The outcome of one conformance test.

    Attributes:
        nodeid: The pytest node id.
        suite: The test class (the author's subclass).
        guarantee: The guarantee id.
        level: ``MUST`` or ``SHOULD``.
        broker: The harness's name for the broker (or result backend) under test.
        outcome: ``pass``, ``FAIL``, ``ERROR`` (the guarantee could not be checked), ``skip``
            or ``xfail`` (a declared known failure that did fail).
        detail: The skip reason or the first line of the failure.
        longrepr: The full failure text, for verbose output.
        consequence_of: For a failure, the failed guarantees it rests on (root causes).
    """

    nodeid: str
    suite: str
    guarantee: str
    level: str
    broker: str = ""
    outcome: str = "pass"
    detail: str = ""
    longrepr: str = ""
    consequence_of: tuple[str, ...] = ()


def _foundations(gid: str) -> set[str]:
    """Every guarantee ``gid`` rests on, directly or through others."""
    seen: set[str] = set()
    todo = list(GUARANTEES[gid].rests_on) if gid in GUARANTEES else []
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in GUARANTEES:
            todo.extend(GUARANTEES[current].rests_on)
    return seen


def mark_consequences(results: Iterable[GuaranteeResult]) -> None:
    """Set ``consequence_of`` on each failure whose foundations failed on the same broker."""
    results = list(results)
    failed: dict[str, set[str]] = {}
    for result in results:
        if result.outcome in _BAD:
            failed.setdefault(result.broker, set()).add(result.guarantee)
    for result in results:
        result.consequence_of = ()
        if result.outcome not in _BAD:
            continue
        bad = failed[result.broker]
        below = _foundations(result.guarantee) & bad
        roots = {gid for gid in below if not _foundations(gid) & bad}
        result.consequence_of = tuple(sorted(roots))


def format_table(results: list[GuaranteeResult], *, width: int | None = None) -> str:
    """Render results: a table, the root causes and consequences, skips, and a total line.

    A broker column appears when the results cover more than one broker.

    Args:
        results: The outcomes to show.
        width: Line width that details are cut to (default: the terminal's, at least 100).
    """
    if width is None:
        width = max(100, shutil.get_terminal_size((160, 24)).columns)
    if not results:
        return "no conformance test ran"
    mark_consequences(results)
    brokers = sorted({r.broker for r in results})
    show_broker = len(brokers) > 1
    columns = [("suite", [r.suite for r in results]), ("guarantee", [r.guarantee for r in results])]
    if show_broker:
        columns.insert(0, ("broker", [r.broker for r in results]))
    widths = [max(len(title), *(len(v) for v in values)) for title, values in columns]
    head = "  ".join(f"{t:<{w}}" for (t, _), w in zip(columns, widths, strict=True))
    head += f"  {'level':<6}  {'result':<6}  detail"
    lines = [head, "-" * min(width, len(head) + 20)]
    room = max(40, width - len(head) + len("detail"))
    for r in sorted(results, key=lambda x: (x.broker, x.suite, x.guarantee)):
        detail = r.detail
        if r.consequence_of:
            detail = f"consequence of {', '.join(r.consequence_of)}: {detail}"
        if len(detail) > room:
            detail = detail[: room - 3] + "..."
        cells = [r.broker, r.suite, r.guarantee] if show_broker else [r.suite, r.guarantee]
        row = "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        lines.append(f"{row}  {r.level:<6}  {r.outcome:<6}  {detail}")
    lines.extend(_causes(results, show_broker))
    lines.extend(_skips(results))
    lines.append(_totals(results))
    return "\n".join(lines)


def _causes(results: list[GuaranteeResult], show_broker: bool) -> list[str]:
    bad = [r for r in results if r.outcome in _BAD]
    if not bad:
        return []
    roots = [r for r in bad if not r.consequence_of]
    lines = ["", "Root causes, to fix first:"]
    for r in sorted(roots, key=lambda x: (x.broker, x.guarantee)):
        where = f" on {r.broker}" if show_broker else ""
        verdict = "could not be checked" if r.outcome == "ERROR" else "is violated"
        lines.append(f"  {r.guarantee} ({r.level}){where} {verdict}: {r.detail}")
    follows: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for r in bad:
        if r.consequence_of:
            follows.setdefault((r.broker, r.consequence_of), []).append(r.guarantee)
    if follows:
        lines.append("Consequences (they rest on a failed foundation; recheck them after the fix):")
        for (broker, roots_of), gids in sorted(follows.items()):
            where = f" on {broker}" if show_broker else ""
            lines.append(f"  {', '.join(sorted(set(gids)))}{where}: rest on {', '.join(roots_of)}")
    return lines


def _skips(results: list[GuaranteeResult]) -> list[str]:
    reasons = Counter(r.detail.split(" (Capabilities.")[0] for r in results if r.outcome == "skip")
    if not reasons:
        return []
    lines = ["", "Skipped because the broker declares it lacks a capability:"]
    lines.extend(f"  {count} x {reason}" for reason, count in sorted(reasons.items()))
    return lines


def _totals(results: list[GuaranteeResult]) -> str:
    totals = Counter(r.outcome for r in results)
    parts = []
    for outcome, count in sorted(totals.items()):
        text = f"{count} {outcome}"
        if outcome in _BAD:
            roots = sum(1 for r in results if r.outcome == outcome and not r.consequence_of)
            if roots != count:
                text += f" ({roots} root cause{'s' if roots != 1 else ''})"
        parts.append(text)
    return "\n" + ", ".join(parts)
