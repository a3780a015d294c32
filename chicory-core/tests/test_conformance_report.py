"""How the suite reports: root causes first, words not bare asserts, ERROR for what cannot run.

Each test runs the suite in a throw-away pytest project (``pytester``), as a plugin author
would, on the memory broker or one of the broken wrappers of ``broken_brokers.py``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

BROKEN = Path(__file__).with_name("broken_brokers.py").read_text()

SUITES = """
from chicory.testing import (
    BrokerBasicsSuite, BrokerDeliverySuite, BrokerSettlementSuite, BrokerStatefulSuite,
    WorkerSuite,
)

class TestBasics(BrokerBasicsSuite):
    pass

class TestSettlement(BrokerSettlementSuite):
    pass

class TestDelivery(BrokerDeliverySuite):
    pass

class TestStateful(BrokerStatefulSuite):
    pass

class TestWorker(WorkerSuite):
    pass
"""

MEMORY = """
import pytest
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: MemoryBroker(lease_seconds=lease_seconds),
    )
"""


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:asyncio", "-p", "no:cacheprovider", *args)


def test_a_broken_ack_is_named_first_and_its_consequences_after(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHICORY_TEST_DEFECT", "noop_ack")
    pytester.makeconftest(BROKEN)
    pytester.makepyfile(SUITES)
    result = _run(
        pytester, "-k", "settle.ack_removes or worker.round_trip or settle.double_ack_harmless"
    )
    result.assert_outcomes(failed=3)
    text = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "Root causes, to fix first:",
            "  settle.ack_removes (MUST) is violated: after the only message was acked: "
            "expected counts ready=0, in_flight=0; the broker counts ready=0, in_flight=1*",
            "Consequences (they rest on a failed foundation*",
            "  settle.double_ack_harmless, worker.round_trip: rest on settle.ack_removes",
            "*3 FAIL (1 root cause)*",
        ]
    )
    result.stdout.fnmatch_lines(["*worker.round_trip*FAIL*consequence of settle.ack_removes*"])
    assert "AssertionError: []" not in text


def test_a_failure_shows_the_suite_code_without_event_loop_frames(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHICORY_TEST_DEFECT", "noop_ack")
    pytester.makeconftest(BROKEN)
    pytester.makepyfile(SUITES)
    result = _run(pytester, "-k", "settle.ack_removes", "--tb=long")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "suite_settle.py" in text
    for plumbing in ("anyio/_core", "anyio/_backends", "asyncio/runners.py", "asyncio/base_events"):
        assert plumbing not in text, f"{plumbing} frames reached the report"


def test_one_table_names_each_broker_when_there_are_several(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MEMORY)
    pytester.makepyfile(
        """
import pytest
from chicory.testing import BrokerBasicsSuite, BrokerHarness
from chicory_memory.broker import MemoryBroker


class TestBasics(BrokerBasicsSuite):
    pass


class TestOther(BrokerBasicsSuite):
    @pytest.fixture
    def chicory_broker_harness(self):
        return BrokerHarness(
            factory=lambda *, lease_seconds, max_deliveries: MemoryBroker(), name="second one"
        )
"""
    )
    result = _run(pytester, "-k", "round_trip")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "broker *suite *guarantee *level *result *detail",
            "MemoryBroker *TestBasics *broker.round_trip *MUST *pass*",
            "second one *TestOther *broker.round_trip *MUST *pass*",
        ]
    )


def test_suites_left_out_are_named(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MEMORY)
    pytester.makepyfile(
        "from chicory.testing import BrokerBasicsSuite\n\n"
        "class TestBasics(BrokerBasicsSuite):\n    pass\n"
    )
    result = _run(pytester, "-k", "round_trip")
    result.stdout.fnmatch_lines(
        ["not run, so not checked: the guarantees of BrokerSettlementSuite, *WorkerSuite*"]
    )


def test_a_guarantee_id_selects_its_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(MEMORY)
    pytester.makepyfile(SUITES)
    result = _run(pytester, "-k", "settle.nack_order")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("missing", "keyword", "fix"),
    [
        (
            "memory_result_backend",
            "worker.round_trip",
            "*result backend*chicory-core?testing?*",
        ),
        ("memory_broker_factory", "stateful.", "*needs chicory-memory, the reference broker*"),
    ],
)
def test_what_is_not_installed_is_an_error_with_the_fix(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
    keyword: str,
    fix: str,
) -> None:
    # The module as the inner run will import it (pytester forgets modules between runs).
    requirements = importlib.import_module("chicory.testing.requirements")
    monkeypatch.setattr(requirements, missing, lambda: None)
    pytester.makeconftest(MEMORY)
    pytester.makepyfile(SUITES)
    result = _run(pytester, "-k", keyword)
    result.assert_outcomes(errors=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*MUST) cannot be checked: {fix}"])
    result.stdout.fnmatch_lines(["*MUST*ERROR*", "Root causes, to fix first:", "*1 ERROR*"])
    assert "skip" not in result.stdout.str().split("Chicory conformance")[-1]


def test_a_session_broker_the_suite_cannot_sever_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker


class Consumer:  # no sever(): the connection cannot be cut
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "sever":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()


class Broker:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def consume(self, queues, *, prefetch):
        return Consumer(self.inner.consume(queues, prefetch=prefetch))


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: Broker(
            MemoryBroker(lease_model="session")
        ),
    )
"""
    )
    pytester.makepyfile(SUITES)
    result = _run(pytester, "-k", "session.redeliver_on_disconnect or session.held_while")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*session.redeliver_on_disconnect (MUST) cannot be checked: the harness cannot sever*"]
    )
