"""Chicory's conformance suite, run against memory:// — the reference every broker is held to."""

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
    ResultBackendHarness,
    ResultBackendSuite,
    RevocationSuite,
    TransactionalEnqueueSuite,
    UniqueSuite,
    WorkerSuite,
)
from chicory_memory.broker import MemoryBroker
from chicory_memory.results import MemoryResultBackend


@pytest.fixture
def chicory_broker_harness() -> BrokerHarness:
    """A fresh memory broker per test, with the lease and delivery limit the test asks for."""
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: MemoryBroker(
            lease_seconds=lease_seconds, max_deliveries=max_deliveries
        ),
        dead_letter_limits=lambda *, max_count, max_age: MemoryBroker(
            dead_letter_max_count=max_count, dead_letter_max_age=max_age
        ),
        name="memory",
    )


@pytest.fixture
def chicory_result_backend_harness() -> ResultBackendHarness:
    """A fresh memory result backend per test."""
    return ResultBackendHarness(factory=MemoryResultBackend, name="memory")


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
    pass


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


@pytest.fixture
def session_harness() -> BrokerHarness:
    """The memory broker with session-bound leases: the oracle of RabbitMQ-like brokers."""
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: MemoryBroker(
            lease_seconds=lease_seconds, max_deliveries=max_deliveries, lease_model="session"
        ),
        name="memory (session leases)",
    )


class TestSessionSettlement(BrokerSettlementSuite):
    @pytest.fixture
    def chicory_broker_harness(self, session_harness: BrokerHarness) -> BrokerHarness:
        return session_harness


class TestSessionDelivery(BrokerDeliverySuite):
    @pytest.fixture
    def chicory_broker_harness(self, session_harness: BrokerHarness) -> BrokerHarness:
        return session_harness


class TestSessionWorker(WorkerSuite):
    @pytest.fixture
    def chicory_broker_harness(self, session_harness: BrokerHarness) -> BrokerHarness:
        return session_harness
