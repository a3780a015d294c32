"""Chicory's conformance suite, run on the example broker: one empty subclass per area."""

from __future__ import annotations

from chicory.testing import (
    BrokerBasicsSuite,
    BrokerDeliverySuite,
    BrokerSettlementSuite,
    BrokerStatefulSuite,
    DeadLetterSuite,
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


class TestStateful(BrokerStatefulSuite):
    pass


class TestWorker(WorkerSuite):
    pass
