"""``chicory conformance TARGET...``: run every suite against installed brokers by URL or name.

For each target the runner writes a throw-away test project (a ``conftest.py`` whose harness
builds brokers from the target, and one empty subclass per suite), runs pytest on it in this
process, and prints one line per guarantee; several targets share one table with a broker
column. Harnesses come from :mod:`chicory.testing.targets`. Only the standard library is
imported up front, so the CLI can say what to install when the test tools are missing.

Each run uses queue names of its own (``chicory-conformance-<run>-...``); each test deletes
its queues when the broker declares ``delete_queue``, and the runner says plainly where data
was left when it does not.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from chicory.errors import ChicoryError
from chicory.plugins import BackendKind, PluginHost
from chicory.redact import redact_url

if TYPE_CHECKING:
    from chicory.testing.summary import GuaranteeResult

__all__ = ["run_conformance"]

_CONFTEST: Final = """\
import pytest

from chicory.testing.targets import broker_harness_for, result_backend_harness_for

TARGET = {target!r}
PREFIX = {prefix!r}


@pytest.fixture
def chicory_broker_harness():
    return broker_harness_for(TARGET, queue_prefix=PREFIX)


@pytest.fixture
def chicory_result_backend_harness():
    return result_backend_harness_for(TARGET)
"""

_SUITES: Final = (
    ("TestBasics", "BrokerBasicsSuite"),
    ("TestSettlement", "BrokerSettlementSuite"),
    ("TestDelivery", "BrokerDeliverySuite"),
    ("TestDeadLetters", "DeadLetterSuite"),
    ("TestInspection", "InspectionSuite"),
    ("TestDelayed", "DelayedSuite"),
    ("TestUnique", "UniqueSuite"),
    ("TestTransactions", "TransactionalEnqueueSuite"),
    ("TestStateful", "BrokerStatefulSuite"),
    ("TestWorker", "WorkerSuite"),
)
_RESULTS: Final = (
    ("TestResults", "ResultBackendSuite"),
    ("TestRevocations", "RevocationSuite"),
    ("TestGroupJoins", "GroupJoinSuite"),
    ("TestProgressFeed", "ProgressFeedSuite"),
)

_REQUIRED: Final = {
    "pytest": "pytest",
    "hypothesis": "Hypothesis",
    "chicory_memory": "chicory-memory (the reference broker and result backend)",
}
"""What ``chicory-core[testing]`` installs, by import name."""


def _write_project(directory: Path, target: str, prefix: str, *, results: bool) -> None:
    suites = _SUITES + (_RESULTS if results else ())
    (directory / "pytest.ini").write_text("[pytest]\naddopts =\n", encoding="utf-8")
    (directory / "conftest.py").write_text(
        _CONFTEST.format(target=target, prefix=prefix), encoding="utf-8"
    )
    names = ", ".join(suite for _, suite in suites)
    classes = "\n\n".join(f"class {name}({suite}):\n    pass\n" for name, suite in suites)
    (directory / "test_conformance.py").write_text(
        f"from chicory.testing import {names}\n\n\n{classes}", encoding="utf-8"
    )


def _pytest_args(project: Path, *, verbose: bool, keyword: str | None) -> list[str]:
    args = [
        str(project),
        f"--rootdir={project}",
        "-c",
        str(project / "pytest.ini"),
        "-p",
        "chicory",
        "-p",
        "no:chicory-conformance-results",
        "-p",
        "no:asyncio",
        "-p",
        "no:cacheprovider",
        "--import-mode=importlib",
        "-W",
        "ignore::DeprecationWarning",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    args += ["-v", "-rA"] if verbose else ["-p", "no:terminal"]
    if keyword:
        args += ["-k", keyword]
    return args


def _run_one(
    target: str, *, verbose: bool, keyword: str | None, stream: TextIO
) -> tuple[list[GuaranteeResult], int]:
    import pytest

    from chicory.testing.report import ResultCollector
    from chicory.testing.targets import broker_spec, cleanup_note, result_backend_spec

    spec, url = broker_spec(target)
    prefix = f"chicory-conformance-{uuid.uuid4().hex[:8]}"
    results = result_backend_spec(target) is not None
    print(
        f"Chicory conformance suite: broker {spec.name!r} ({redact_url(url)}), run {prefix}",
        file=stream,
    )
    if not results:
        print(
            f"  plugin {spec.name!r} offers no result backend: the result backend suite does "
            "not apply",
            file=stream,
        )
    collector = ResultCollector(summary=False)
    with tempfile.TemporaryDirectory(prefix="chicory-conformance-") as tmp:
        project = Path(tmp)
        _write_project(project, target, prefix, results=results)
        code = pytest.main(_pytest_args(project, verbose=verbose, keyword=keyword), [collector])
    try:
        print(f"  {cleanup_note(target, prefix, results=results)}", file=stream)
    except Exception as exc:  # a factory that cannot build: the table says why
        print(f"  could not tell what was left behind: {exc}", file=stream)
    return list(collector.results.values()), int(code)


def run_conformance(
    target: str | Sequence[str],
    *,
    verbose: bool = False,
    keyword: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the whole conformance suite against each target and print one table.

    Args:
        target: A broker URL (``redis://localhost:6379/15``) or an installed plugin name, or
            several of them (the table then has a broker column).
        verbose: Show pytest's own output and the full text of every failure.
        keyword: Run only the tests matching this pytest ``-k`` expression.
        out: Where to print (default: standard output).

    Returns:
        0 when every guarantee that ran held, 1 when one failed or could not be checked
        (ERROR), 2 when a target matches no plugin or the test tools are missing, or
        pytest's exit code if the suite could not run at all.
    """
    stream = out if out is not None else sys.stdout
    missing = [what for name, what in _REQUIRED.items() if importlib.util.find_spec(name) is None]
    if "pytest" in missing or "Hypothesis" in missing:
        print(
            f"chicory conformance needs {' and '.join(missing)}: pip install "
            "'chicory-core[testing]'",
            file=stream,
        )
        return 2
    if missing:
        print(
            f"warning: {missing[0]} is not installed, so the guarantees that need it cannot "
            "be checked (they are reported as ERROR): pip install 'chicory-core[testing]'",
            file=stream,
        )
    targets = [target] if isinstance(target, str) else list(target)
    host = PluginHost()
    for name in targets:
        try:
            host.resolve(BackendKind.BROKER, name)
        except ChicoryError as exc:
            print(f"chicory conformance: {exc}", file=stream)
            return 2

    from chicory.testing.summary import format_table

    results: list[GuaranteeResult] = []
    codes: list[int] = []
    for name in targets:
        found, code = _run_one(name, verbose=verbose, keyword=keyword, stream=stream)
        results.extend(found)
        codes.append(code)
    print(format_table(results), file=stream)
    if verbose:
        for result in results:
            if result.outcome in ("FAIL", "ERROR"):
                print(f"\n--- {result.guarantee} ({result.nodeid})\n{result.longrepr}", file=stream)
    if not results:
        return max(codes, default=1) or 1
    return 1 if any(r.outcome in ("FAIL", "ERROR") for r in results) else 0
