"""Chicory's conformance suite, run against the Redis broker and result backend.

The harness uses short reclaim and delayed-move intervals so lease and delay guarantees are
checked quickly; every test uses its own queues and task ids, deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

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
from chicory_redis.broker import RedisBroker
from chicory_redis.results import RedisResultBackend

REDIS_URL = os.environ.get("CHICORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"chicory-conformance-{uuid.uuid4().hex[:8]}"


def _limited(*, max_count: int, max_age: float) -> Broker:
    return RedisBroker.from_url(
        REDIS_URL,
        key_prefix=PREFIX,
        dead_letter_max_count=max_count,
        dead_letter_max_age=max_age,
    )


def _broker(*, lease_seconds: float, max_deliveries: int | None) -> Broker:
    return RedisBroker.from_url(
        REDIS_URL,
        key_prefix=PREFIX,
        lease_seconds=lease_seconds,
        max_deliveries=max_deliveries,
        reclaim_interval=0.05,
        delayed_poll_interval=0.02,
    )


async def _purge_queues(broker: Broker, queues: Sequence[str]) -> None:
    assert isinstance(broker, RedisBroker)
    await broker.connect()  # a test may have closed it; the harness closes it again
    for queue in queues:
        await broker.delete_queue(queue)


def _backend() -> ResultBackend:
    return RedisResultBackend.from_url(REDIS_URL, key_prefix=PREFIX)


async def _purge_results(backend: ResultBackend, ids: Sequence[str]) -> None:
    assert isinstance(backend, RedisResultBackend)
    await backend.connect()
    keys = backend.keys
    await backend.client.delete(
        *(keys.result(i) for i in ids), *(keys.worker(i) for i in ids), keys.workers
    )


@pytest.fixture
def chicory_broker_harness() -> BrokerHarness:
    """The Redis broker under test."""
    return BrokerHarness(
        factory=_broker, purge=_purge_queues, dead_letter_limits=_limited, name="redis"
    )


@pytest.fixture
def chicory_result_backend_harness() -> ResultBackendHarness:
    """The Redis result backend under test."""
    return ResultBackendHarness(factory=_backend, purge=_purge_results, name="redis")


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
    def chicory_broker_harness(self) -> BrokerHarness:
        """Hundreds of operations, each a few round trips and some a short listen: more time
        than one test's default 30 s on a slow machine (it takes ~10 s on a quick one)."""
        return BrokerHarness(factory=_broker, purge=_purge_queues, name="redis", timeout=120.0)


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
