"""Harnesses: what a plugin author hands the conformance suite through one fixture.

A harness says how to open a fresh broker (or result backend) with the knobs a test needs,
what the broker declares it can do, and optionally how to clean up after a test::

    @pytest.fixture
    def chicory_broker_harness() -> BrokerHarness:
        return BrokerHarness(
            factory=lambda *, lease_seconds, max_deliveries: MyBroker(
                lease_seconds=lease_seconds, max_deliveries=max_deliveries
            ),
        )

Cleaning up (the purge contract): once per test, after every broker and consumer the test
opened was closed, the suite connects the test's first broker again (tests often close it
themselves) and hands it to ``BrokerHarness.purge`` with the names of every queue the test
used; without a ``purge``, a broker declaring ``delete_queue`` has those queues deleted.

This module holds the harnesses and how the suite reads one (the wrong kind of object, a
missing capability, a missing prerequisite); what a test then works with, the environment
opened from a harness, is :mod:`chicory.testing.envs` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, Protocol

import anyio
import attrs
import pytest

from chicory.backend import ResultBackend
from chicory.broker import Broker, Capabilities, Consumer
from chicory.testing.envs import DEFAULT_LEASE_SECONDS, BrokerEnv, ResultsEnv, unique
from chicory.testing.guarantees import EnvFactory
from chicory.testing.requirements import (
    NO_DEAD_LETTER_LIMITS,
    NO_SEVER,
    missing_oracle,
    missing_result_backend,
    unmet_requirement,
)
from chicory.testing.transaction_hooks import NO_TRANSACTIONS, TransactionFactory

__all__ = [
    "BROKER_ENV",
    "DEFAULT_LEASE_SECONDS",
    "RESULTS_ENV",
    "BrokerEnv",
    "BrokerEnvFactory",
    "BrokerFactory",
    "BrokerHarness",
    "DeadLetterLimitsFactory",
    "ResultBackendHarness",
    "ResultsEnv",
    "ResultsEnvFactory",
    "check_harness",
    "unique",
]


class BrokerFactory(Protocol):
    """Builds a new, unconnected broker with the given knobs."""

    def __call__(self, *, lease_seconds: float, max_deliveries: int | None) -> Broker:
        """Return a new broker.

        Args:
            lease_seconds: Seconds an unsettled delivery stays invisible to other consumers
                (SQS: visibility timeout; Redis: idle time before reclaim).
            max_deliveries: Deliveries after which the broker dead-letters a message by
                itself, or ``None`` for no limit.
        """
        ...


class DeadLetterLimitsFactory(Protocol):
    """Builds a new, unconnected broker that keeps its dead letters bounded."""

    def __call__(self, *, max_count: int, max_age: float) -> Broker:
        """Return a new broker (with a long lease and no delivery limit).

        Args:
            max_count: The most dead letters it keeps per queue (it drops the oldest).
            max_age: Seconds after which it drops a dead letter.
        """
        ...


@attrs.frozen(kw_only=True)
class BrokerHarness:
    """How the conformance suite opens the broker under test.

    Attributes:
        factory: Builds a fresh, unconnected broker (see :class:`BrokerFactory`). Each test
            opens its own brokers and uses queue names no other test uses, so a shared
            server needs no cleaning between tests.
        capabilities: The capabilities to test against; ``None`` reads
            ``factory(...).capabilities``.
        purge: Optional ``async (broker, queues)`` that removes every trace of ``queues``;
            run once after each test with the test's first broker, connected (see the
            module docstring). Without it, a broker declaring ``delete_queue`` has the
            queues deleted; otherwise they are left on the server.
        result_backend: Optional factory of the result backend used by the end-to-end
            suite; ``None`` uses the in-process one of ``chicory-memory`` (installed with
            ``chicory-core[testing]``).
        large_body_bytes: Size of the "large body" test message when the broker declares
            no ``max_body_bytes``.
        patience: Seconds the suite waits for something that must happen eventually (a
            redelivery after a lease expired, a delayed message falling due).
        timeout: Seconds one test may take before it fails.
        clock_tolerance: Seconds of clock skew allowed when checking times.
        short_lease: Lease in seconds of the brokers that tests of lease behaviour open
            (they run for a few leases). Raise it for a broker whose leases are coarse.
        sever: Optional ``async (consumer)`` that cuts the consumer's connection or
            channel the way a network failure or a dead process would (no clean close).
            Without it the suite calls the consumer's own ``sever()`` if it has one.
            Needed by the ``session.*`` guarantees of brokers with session-bound leases.
        queue_prefix: First part of every queue name the suite uses.
        known_failures: Guarantee ids the broker is known to break, each with why; those
            tests are expected to fail (strict xfail: they fail the run once they pass).
        name: How reports name the broker (default: the broker's class name).
        dead_letter_limits: Builds a broker with small dead-letter limits (see
            :class:`DeadLetterLimitsFactory`); needed when the broker declares
            ``dead_letter_max_count`` or ``dead_letter_max_age``, whose guarantees use it.
        transactions: Opens a transaction on the broker's database (see
            :mod:`chicory.testing.transaction_hooks`); needed when the broker declares
            ``transactional_enqueue``, whose guarantees publish inside it.
    """

    factory: BrokerFactory
    capabilities: Capabilities | None = None
    purge: Callable[[Broker, Sequence[str]], Awaitable[None]] | None = None
    result_backend: Callable[[], ResultBackend] | None = None
    large_body_bytes: int = 1024 * 1024
    patience: float = 10.0
    timeout: float = 30.0
    clock_tolerance: float = 0.1
    short_lease: float = 1.0
    sever: Callable[[Consumer], Awaitable[None]] | None = None
    queue_prefix: str = "chicory-conformance"
    known_failures: Mapping[str, str] = attrs.field(factory=dict)
    name: str = ""
    dead_letter_limits: DeadLetterLimitsFactory | None = None
    transactions: TransactionFactory | None = None
    _probe: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    def _sample(self) -> Broker:
        sample = self._probe.get("broker")
        if sample is None:
            sample = self._probe["broker"] = self.factory(
                lease_seconds=DEFAULT_LEASE_SECONDS, max_deliveries=None
            )
        broker: Broker = sample
        return broker

    def declared_capabilities(self) -> Capabilities:
        """The capabilities tests skip by."""
        if self.capabilities is not None:
            return self.capabilities
        return self._sample().capabilities

    def display_name(self) -> str:
        """``name``, or the class name of the brokers the factory builds."""
        return self.name or type(self._sample()).__name__


@attrs.frozen(kw_only=True)
class ResultBackendHarness:
    """How the conformance suite opens the result backend under test.

    Attributes:
        factory: Builds a fresh, unconnected result backend. Tests use task and worker ids
            no other test uses.
        purge: Optional ``async (backend, task_ids)`` run after a test.
        timeout: Seconds one test may take before it fails.
        known_failures: Guarantee ids the backend is known to break, each with why.
        name: How reports name the backend (default: its class name).
    """

    factory: Callable[[], ResultBackend]
    purge: Callable[[ResultBackend, Sequence[str]], Awaitable[None]] | None = None
    timeout: float = 30.0
    known_failures: Mapping[str, str] = attrs.field(factory=dict)
    name: str = ""

    def display_name(self) -> str:
        """``name``, or the class name of the backends the factory builds."""
        return self.name or type(self.factory()).__name__


def check_harness(value: Any, kind: type[Any], fixture: str) -> None:
    """Fail the test with a clear message if ``fixture`` returned the wrong kind of object."""
    if not isinstance(value, kind):
        pytest.fail(
            f"fixture {fixture!r} returned {value!r}; it must return a "
            f"chicory.testing.{kind.__name__} (see docs/conformance.md)",
            pytrace=False,
        )


async def _can_sever(harness: BrokerHarness) -> bool:
    broker = harness.factory(lease_seconds=DEFAULT_LEASE_SECONDS, max_deliveries=None)
    await broker.connect()
    try:
        consumer = broker.consume([f"{harness.queue_prefix}-probe"], prefetch=1)
        try:
            return callable(getattr(consumer, "sever", None))
        finally:
            await consumer.close()
    finally:
        await broker.close()


class BrokerEnvFactory(EnvFactory):
    """Builds a :class:`BrokerEnv` from the ``chicory_broker_harness`` fixture."""

    fixture = "chicory_broker_harness"

    def check_harness(self, harness: Any) -> None:
        """Fail unless the fixture returned a :class:`BrokerHarness`."""
        check_harness(harness, BrokerHarness, self.fixture)

    def skip_reason(self, harness: Any, requires: Sequence[str]) -> str | None:
        """Name the first required capability the harness declares it lacks."""
        capabilities = harness.declared_capabilities()
        for expression in requires:
            reason = unmet_requirement(capabilities, harness, expression)
            if reason is not None:
                return reason
        return None

    def unmet_need(self, harness: Any, need: str) -> str | None:
        """What is missing for ``need``: ``result_backend``, ``oracle``, ``sever`` (a way to
        cut a consumer's connection), ``sever_if_session`` (that, for session brokers),
        ``dead_letter_limits`` (a factory of brokers with small dead-letter limits),
        ``transactions`` (a way to open a transaction on the broker's database)."""
        if need == "dead_letter_limits":
            return None if harness.dead_letter_limits is not None else NO_DEAD_LETTER_LIMITS
        if need == "transactions":
            return None if harness.transactions is not None else NO_TRANSACTIONS
        if need == "result_backend":
            return missing_result_backend(harness)
        if need == "oracle":
            return missing_oracle()
        if need in ("sever", "sever_if_session"):
            session = harness.declared_capabilities().lease_model == "session"
            if need == "sever_if_session" and not session:
                return None
            if harness.sever is not None or anyio.run(_can_sever, harness):
                return None
            return NO_SEVER
        raise ValueError(f"unknown conformance prerequisite {need!r}")

    def timeout(self, harness: Any) -> float:
        """The harness's per-test timeout."""
        return float(harness.timeout)

    async def open(self, harness: Any, stack: AsyncExitStack) -> BrokerEnv:
        """A new broker environment."""
        return BrokerEnv(harness, stack)


class ResultsEnvFactory(EnvFactory):
    """Builds a :class:`ResultsEnv` from the ``chicory_result_backend_harness`` fixture."""

    fixture = "chicory_result_backend_harness"

    def check_harness(self, harness: Any) -> None:
        """Fail unless the fixture returned a :class:`ResultBackendHarness`."""
        check_harness(harness, ResultBackendHarness, self.fixture)

    def skip_reason(self, harness: Any, requires: Sequence[str]) -> str | None:
        """Result backends declare their optional powers by implementing their protocols:
        a test requiring ``revocations`` skips a backend that is no
        :class:`~chicory.revocation.Revocations`, one requiring ``group_joins`` one that is
        no :class:`~chicory.workflow.joins.GroupJoins`, one requiring ``progress_feed`` one
        that is no :class:`~chicory.progress.ProgressFeed`."""
        if "revocations" in requires:
            from chicory.revocation import Revocations

            backend = harness.factory()
            if not isinstance(backend, Revocations):
                return (
                    f"the result backend {backend!r} keeps no revocation records (it lacks "
                    "revoke, revocations and watch_revocations)"
                )
        if "group_joins" in requires:
            from chicory.workflow.joins import GroupJoins

            backend = harness.factory()
            if not isinstance(backend, GroupJoins):
                return f"the result backend {backend!r} cannot join groups (it lacks join)"
        if "progress_feed" in requires:
            from chicory.progress import ProgressFeed

            backend = harness.factory()
            if not isinstance(backend, ProgressFeed):
                return (
                    f"the result backend {backend!r} pushes no progress (it lacks "
                    "store_progress and watch_progress)"
                )
        return None

    def timeout(self, harness: Any) -> float:
        """The harness's per-test timeout."""
        return float(harness.timeout)

    async def open(self, harness: Any, stack: AsyncExitStack) -> ResultsEnv:
        """A new result backend environment."""
        return ResultsEnv(harness, stack)


BROKER_ENV: Final = BrokerEnvFactory()
RESULTS_ENV: Final = ResultsEnvFactory()
