"""Chicory's conformance suite, run against the SQLite broker and result backend: every area,
on a database file of the test's own (see ``conftest.py``)."""

from __future__ import annotations

import pytest

from chicory.testing import (
    BrokerBasicsSuite,
    BrokerDeliverySuite,
    BrokerHarness,
    BrokerSettlementSuite,
    BrokerStatefulSuite,
    DeadLetterSuite,
    DelayedSuite,
    FlowControlSuite,
    GroupJoinSuite,
    InspectionSuite,
    ProgressFeedSuite,
    ResultBackendSuite,
    RevocationSuite,
    TransactionalEnqueueSuite,
    UniqueSuite,
    WorkerSuite,
)


class TestBasics(BrokerBasicsSuite):
    pass


class TestSettlement(BrokerSettlementSuite):
    pass


class TestDelivery(BrokerDeliverySuite):
    pass


class TestDeadLetters(DeadLetterSuite):
    pass


class TestInspection(InspectionSuite):
    pass


class TestStateful(BrokerStatefulSuite):
    @pytest.fixture
    def chicory_broker_harness(self, chicory_broker_harness: BrokerHarness) -> BrokerHarness:
        """Hundreds of operations, each a transaction: more than the default 30 s on a
        loaded machine."""
        return BrokerHarness(factory=chicory_broker_harness.factory, name="sqlite", timeout=120.0)


class TestResults(ResultBackendSuite):
    pass


class TestWorker(WorkerSuite):
    pass


class TestDelayed(DelayedSuite):
    pass


class TestFlowControl(FlowControlSuite):
    pass


class TestUnique(UniqueSuite):
    pass


class TestTransactions(TransactionalEnqueueSuite):
    pass  # skipped: no transactional_enqueue (its queue is not in the caller's database)


class TestRevocations(RevocationSuite):
    pass


class TestGroupJoins(GroupJoinSuite):
    pass


class TestProgressFeed(ProgressFeedSuite):
    pass
