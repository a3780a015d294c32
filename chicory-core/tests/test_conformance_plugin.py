"""The pytest plugin and the command-line runner, as a plugin author meets them."""

from __future__ import annotations

import io

import pytest

from chicory.testing.runner import run_conformance

pytest_plugins = ["pytester"]

SUITES = """
from chicory.testing import BrokerBasicsSuite, BrokerDeliverySuite

class TestBasics(BrokerBasicsSuite):
    pass

class TestDelivery(BrokerDeliverySuite):
    pass
"""

MEMORY_HARNESS = """
import pytest
from chicory.broker import Capabilities
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker

@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: MemoryBroker(lease_seconds=lease_seconds),
        capabilities=CAPABILITIES,
    )
"""


def test_a_missing_capability_skips_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report is cut to the terminal's width, which is narrow under pytest-xdist.
    monkeypatch.setenv("COLUMNS", "200")
    pytester.makeconftest(
        MEMORY_HARNESS.replace("CAPABILITIES", "Capabilities(delayed_delivery=False)")
    )
    pytester.makepyfile(SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "delayed", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*SKIPPED*delivery.delayed_*: the broker declares no 'delayed_delivery' capability*"]
    )
    result.stdout.fnmatch_lines(
        ["*delivery.delayed_counts*SHOULD*skip*the broker declares no 'delayed_delivery'*"]
    )


def test_a_declared_capability_runs_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MEMORY_HARNESS.replace("CAPABILITIES", "None"))
    pytester.makepyfile(SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "round_trip or fifo")
    result.assert_outcomes(passed=2)


def test_a_missing_harness_says_what_to_write(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "round_trip")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*needs a broker harness*'chicory_broker_harness'*",
            "*def chicory_broker_harness() -> BrokerHarness:*",
            "*broker.round_trip*MUST*ERROR*this test comes from a Chicory*",
        ]
    )


def test_a_harness_of_the_wrong_type_is_named(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef chicory_broker_harness():\n    return 'redis://'\n"
    )
    pytester.makepyfile(SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "round_trip")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*must return a chicory.testing.BrokerHarness*",
            "*broker.round_trip (MUST) could not be checked*",
        ]
    )


def test_the_plugin_adds_no_tests_by_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
from chicory.testing import BrokerBasicsSuite  # imported, not subclassed: not collected

def test_plain():
    assert True
"""
    )
    result = pytester.runpytest_inprocess("-p", "no:asyncio")
    result.assert_outcomes(passed=1)
    assert "Chicory conformance" not in result.stdout.str()


def test_runner_prints_a_table_per_guarantee() -> None:
    out = io.StringIO()
    code = run_conformance("memory://", keyword="round_trip or ack_removes or body_limit", out=out)
    text = out.getvalue()
    assert code == 0, text
    assert "broker 'memory' (memory://)" in text
    for line in (
        "broker.round_trip  ",
        "settle.ack_removes  ",
        "worker.round_trip  ",
    ):
        row = next(r for r in text.splitlines() if line in r)
        assert " MUST " in row, row
        assert " pass " in row, row
    skipped = next(r for r in text.splitlines() if "broker.body_limit" in r)
    assert " skip " in skipped, skipped
    assert "max_body_bytes" in skipped, skipped


def test_runner_names_installed_brokers_for_an_unknown_target() -> None:
    out = io.StringIO()
    assert run_conformance("nosuch://x", out=out) == 2
    assert "nosuch" in out.getvalue()
    assert "memory" in out.getvalue(), "the message lists what is installed"


def test_a_missing_result_backend_harness_says_what_to_write(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "from chicory.testing import ResultBackendSuite\n\n"
        "class TestResults(ResultBackendSuite):\n    pass\n"
    )
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "store_get")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*needs a result backend harness*'chicory_result_backend_harness'*",
            "*def chicory_result_backend_harness() -> ResultBackendHarness:*",
        ]
    )


KNOWN = """
import attrs
import pytest
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


class CountsDelayedAsReady(MemoryBroker):
    async def counts(self, queue):
        counts = await super().counts(queue)
        return attrs.evolve(counts, ready=counts.ready + counts.delayed, delayed=0)


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: BROKER(lease_seconds=lease_seconds),
        known_failures={"delivery.delayed_counts": "delayed messages are counted as ready"},
    )
"""


def test_a_declared_known_failure_is_an_expected_failure(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(KNOWN.replace("BROKER", "CountsDelayedAsReady"))
    pytester.makepyfile(SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "delayed_counts")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(
        ["*delivery.delayed_counts*SHOULD*xfail*delayed messages are counted as ready*"]
    )


def test_a_known_failure_that_passes_fails_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(KNOWN.replace("BROKER", "MemoryBroker"))
    pytester.makepyfile(SUITES)
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-k", "delayed_counts")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*delivery.delayed_counts*SHOULD*FAIL*XPASS(strict)*"])
