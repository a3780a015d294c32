"""Chicory's conformance suite, run against the PostgreSQL broker and result backend.

Every test uses its own queues and task ids in the session's own database (see
``conftest.py``); queues are deleted after each test with ``delete_queue``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import pytest

from chicory.backend import ResultBackend
from chicory.broker import Broker
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
from chicory_postgres.broker import PostgresBroker
from chicory_postgres.conformance import asyncpg_transaction, psycopg_transaction
from chicory_postgres.results import PostgresResultBackend


async def _purge_queues(broker: Broker, queues: Sequence[str]) -> None:
    assert isinstance(broker, PostgresBroker)
    await broker.connect()  # a test may have closed it; the harness closes it again
    for queue in queues:
        await broker.delete_queue(queue)


def _harness(url: str, *, timeout: float = 30.0) -> BrokerHarness:
    def build(*, lease_seconds: float, max_deliveries: int | None) -> Broker:
        return PostgresBroker.from_url(
            url, lease_seconds=lease_seconds, max_deliveries=max_deliveries, poll_interval=0.5
        )

    def limited(*, max_count: int, max_age: float) -> Broker:
        return PostgresBroker.from_url(
            url, dead_letter_max_count=max_count, dead_letter_max_age=max_age
        )

    return BrokerHarness(
        factory=build,
        purge=_purge_queues,
        dead_letter_limits=limited,
        name="postgres",
        timeout=timeout,
        transactions=psycopg_transaction,
    )


@pytest.fixture
def chicory_broker_harness(postgres_url: str) -> BrokerHarness:
    """The PostgreSQL broker under test."""
    return _harness(postgres_url)


@pytest.fixture
def chicory_result_backend_harness(postgres_url: str) -> ResultBackendHarness:
    """The PostgreSQL result backend under test."""

    def build() -> ResultBackend:
        return PostgresResultBackend.from_url(postgres_url)

    return ResultBackendHarness(factory=build, name="postgres")


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


@pytest.mark.timeout(360)
class TestStateful(BrokerStatefulSuite):
    @pytest.fixture
    def chicory_broker_harness(self, postgres_url: str) -> BrokerHarness:
        """Hundreds of operations, each a round trip or two, and the memory oracle's: about
        20 s on an idle 2-core machine, several times that on a loaded one."""
        return _harness(postgres_url, timeout=300.0)


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


class TestRevocations(RevocationSuite):
    pass


class TestGroupJoins(GroupJoinSuite):
    pass


class TestTransactions(TransactionalEnqueueSuite):
    pass


class TestTransactionsOnAsyncpg(TransactionalEnqueueSuite):
    @pytest.fixture
    def chicory_broker_harness(self, postgres_url: str) -> BrokerHarness:
        """The same guarantees, the application's transaction held on asyncpg."""
        return attrs.evolve(_harness(postgres_url), transactions=asyncpg_transaction)


class TestProgressFeed(ProgressFeedSuite):
    pass


# -- without LISTEN/NOTIFY (``?notify=false``, as behind PgBouncer in transaction mode) ------


def _polling_results(url: str) -> ResultBackendHarness:
    def build() -> ResultBackend:
        return PostgresResultBackend.from_url(url, notify=False, poll_interval=0.05)

    return ResultBackendHarness(factory=build, name="postgres-polling")


class TestDeliveryPolling(BrokerDeliverySuite):
    """Consumers that poll instead of listening still deliver as promised."""

    @pytest.fixture
    def chicory_broker_harness(self, postgres_url: str) -> BrokerHarness:
        return _harness(f"{postgres_url}?notify=false")


class TestResultsPolling(ResultBackendSuite):
    """Waiters that poll instead of listening."""

    @pytest.fixture
    def chicory_result_backend_harness(self, postgres_url: str) -> ResultBackendHarness:
        return _polling_results(postgres_url)


class TestRevocationsPolling(RevocationSuite):
    """Revocation watchers that read the table instead of listening."""

    @pytest.fixture
    def chicory_result_backend_harness(self, postgres_url: str) -> ResultBackendHarness:
        return _polling_results(postgres_url)


class TestProgressFeedPolling(ProgressFeedSuite):
    """Progress subscribers that read the record instead of listening."""

    @pytest.fixture
    def chicory_result_backend_harness(self, postgres_url: str) -> ResultBackendHarness:
        return _polling_results(postgres_url)
