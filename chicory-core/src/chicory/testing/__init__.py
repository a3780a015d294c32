"""Chicory's conformance suite: prove a broker or result backend plugin correct.

A plugin author provides one harness fixture in ``conftest.py`` and subclasses the suites
with an empty body::

    from chicory.testing import BrokerBasicsSuite

    class TestBasics(BrokerBasicsSuite):
        pass

Every test names the guarantee it checks (``docs/conformance.md`` lists them all) and skips,
with the reason shown, only when the broker declares it lacks a capability the guarantee
needs; a test that cannot run for any other reason (a missing install or harness option) is an
ERROR naming the fix. The pytest plugin (:mod:`chicory.testing.plugin`) is loaded
automatically. Install everything the suite runs on with ``pip install 'chicory-core[testing]'``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chicory.testing.guarantees import GUARANTEES, Guarantee, Level
    from chicory.testing.harness import (
        BrokerFactory,
        BrokerHarness,
        DeadLetterLimitsFactory,
        ResultBackendHarness,
    )
    from chicory.testing.suite_basics import BrokerBasicsSuite
    from chicory.testing.suite_dead_letters import DeadLetterSuite
    from chicory.testing.suite_delayed import DelayedSuite
    from chicory.testing.suite_delivery import BrokerDeliverySuite
    from chicory.testing.suite_flow import FlowControlSuite
    from chicory.testing.suite_inspection import InspectionSuite
    from chicory.testing.suite_joins import GroupJoinSuite
    from chicory.testing.suite_progress import ProgressFeedSuite
    from chicory.testing.suite_results import ResultBackendSuite
    from chicory.testing.suite_revocations import RevocationSuite
    from chicory.testing.suite_settle import BrokerSettlementSuite
    from chicory.testing.suite_stateful import BrokerStatefulSuite
    from chicory.testing.suite_transactions import TransactionalEnqueueSuite
    from chicory.testing.suite_unique import UniqueSuite
    from chicory.testing.suite_worker import WorkerSuite
    from chicory.testing.transaction_hooks import OpenTransaction, TransactionFactory

# Imported on first use, so that the auto-loaded pytest plugin stays cheap.
_WHERE = {
    "GUARANTEES": "guarantees",
    "Guarantee": "guarantees",
    "Level": "guarantees",
    "BrokerFactory": "harness",
    "BrokerHarness": "harness",
    "DeadLetterLimitsFactory": "harness",
    "ResultBackendHarness": "harness",
    "BrokerBasicsSuite": "suite_basics",
    "DeadLetterSuite": "suite_dead_letters",
    "DelayedSuite": "suite_delayed",
    "BrokerDeliverySuite": "suite_delivery",
    "FlowControlSuite": "suite_flow",
    "InspectionSuite": "suite_inspection",
    "GroupJoinSuite": "suite_joins",
    "ProgressFeedSuite": "suite_progress",
    "ResultBackendSuite": "suite_results",
    "RevocationSuite": "suite_revocations",
    "BrokerSettlementSuite": "suite_settle",
    "BrokerStatefulSuite": "suite_stateful",
    "TransactionalEnqueueSuite": "suite_transactions",
    "OpenTransaction": "transaction_hooks",
    "TransactionFactory": "transaction_hooks",
    "UniqueSuite": "suite_unique",
    "WorkerSuite": "suite_worker",
}

SUITE_MODULES = (
    "chicory.testing.suite_basics",
    "chicory.testing.suite_cleanup",
    "chicory.testing.suite_settle",
    "chicory.testing.suite_delivery",
    "chicory.testing.suite_leases",
    "chicory.testing.suite_sessions",
    "chicory.testing.suite_dead_letters",
    "chicory.testing.suite_inspection",
    "chicory.testing.suite_delayed",
    "chicory.testing.suite_flow",
    "chicory.testing.suite_unique",
    "chicory.testing.suite_transactions",
    "chicory.testing.suite_results",
    "chicory.testing.suite_revocations",
    "chicory.testing.suite_joins",
    "chicory.testing.suite_progress",
    "chicory.testing.suite_stateful",
    "chicory.testing.suite_worker",
    "chicory.testing.suite_worker_crashes",
    "chicory.testing.suite_worker_failures",
    "chicory.testing.suite_worker_redelivery",
)
"""Every module defining conformance tests (import them all to fill ``GUARANTEES``)."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'chicory.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chicory.testing.{module}"), name)


__all__ = [
    "GUARANTEES",
    "SUITE_MODULES",
    "BrokerBasicsSuite",
    "BrokerDeliverySuite",
    "BrokerFactory",
    "BrokerHarness",
    "BrokerSettlementSuite",
    "BrokerStatefulSuite",
    "DeadLetterLimitsFactory",
    "DeadLetterSuite",
    "DelayedSuite",
    "FlowControlSuite",
    "GroupJoinSuite",
    "Guarantee",
    "InspectionSuite",
    "Level",
    "OpenTransaction",
    "ProgressFeedSuite",
    "ResultBackendHarness",
    "ResultBackendSuite",
    "RevocationSuite",
    "TransactionFactory",
    "TransactionalEnqueueSuite",
    "UniqueSuite",
    "WorkerSuite",
]
