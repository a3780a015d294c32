"""``chicory conformance TARGET``: run every suite against an installed broker by URL or name.

The runner writes a throw-away test project (a ``conftest.py`` whose harness builds brokers
from the target, and one empty subclass per suite), runs pytest on it in this process, and
prints one line per guarantee. Harnesses come from :mod:`chicory.testing.targets`. Only the
standard library is imported up front, so the CLI can say what to install when pytest is
missing.

Point it at a scratch server: the tests create (uniquely named) queues and leave them.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Final, TextIO

from chicory.errors import ChicoryError
from chicory.plugins import BackendKind, PluginHost

__all__ = ["run_conformance"]

_CONFTEST: Final = """\
import pytest

from chicory.testing.targets import broker_harness_for, result_backend_harness_for

TARGET = {target!r}


@pytest.fixture
def chicory_broker_harness():
    return broker_harness_for(TARGET)


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
    ("TestStateful", "BrokerStatefulSuite"),
    ("TestWorker", "WorkerSuite"),
    ("TestResults", "ResultBackendSuite"),
)


def _write_project(directory: Path, target: str) -> None:
    (directory / "pytest.ini").write_text("[pytest]\naddopts =\n", encoding="utf-8")
    (directory / "conftest.py").write_text(_CONFTEST.format(target=target), encoding="utf-8")
    names = ", ".join(suite for _, suite in _SUITES)
    classes = "\n\n".join(f"class {name}({suite}):\n    pass\n" for name, suite in _SUITES)
    (directory / "test_conformance.py").write_text(
        f"from chicory.testing import {names}\n\n\n{classes}", encoding="utf-8"
    )


def run_conformance(
    target: str, *, verbose: bool = False, keyword: str | None = None, out: TextIO | None = None
) -> int:
    """Run the whole conformance suite against ``target`` and print a per-guarantee table.

    Args:
        target: A broker URL (``redis://localhost:6379/15``) or an installed plugin name.
        verbose: Show pytest's own output and the full text of every failure.
        keyword: Run only the tests matching this pytest ``-k`` expression.
        out: Where to print (default: standard output).

    Returns:
        0 when no guarantee failed, 1 when one did, 2 when ``target`` matches no plugin (or
        pytest is missing), or pytest's exit code if the suite could not run at all.
    """
    stream = out if out is not None else sys.stdout
    missing = [name for name in ("pytest", "hypothesis") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"chicory conformance needs {' and '.join(missing)}: "
            "pip install 'chicory-core[testing]'",
            file=stream,
        )
        return 2
    try:
        spec, url = PluginHost().resolve(BackendKind.BROKER, target)
    except ChicoryError as exc:
        print(f"chicory conformance: {exc}", file=stream)
        return 2
    import pytest

    from chicory.testing.report import ResultCollector, format_table

    print(f"Chicory conformance suite: broker {spec.name!r} ({url})", file=stream)
    collector = ResultCollector(summary=False)
    with tempfile.TemporaryDirectory(prefix="chicory-conformance-") as tmp:
        project = Path(tmp)
        _write_project(project, target)
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
        code = pytest.main(args, plugins=[collector])
    results = list(collector.results.values())
    print(format_table(results), file=stream)
    if verbose:
        for result in results:
            if result.outcome in ("FAIL", "ERROR"):
                print(f"\n--- {result.guarantee} ({result.nodeid})\n{result.longrepr}", file=stream)
    if not results:
        return int(code) or 1
    return 1 if any(r.outcome in ("FAIL", "ERROR") for r in results) else 0
