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
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, Protocol

import anyio
import attrs
import pytest

from chicory.backend import ResultBackend
from chicory.broker import Broker, Capabilities, Consumer, delete_queue
from chicory.testing.guarantees import EnvFactory
from chicory.testing.requirements import (
    missing_oracle,
    missing_result_backend,
    unmet_requirement,
)
from chicory.testing.transaction_hooks import NO_TRANSACTIONS, TransactionFactory

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "BrokerEnv",
    "BrokerFactory",
    "BrokerHarness",
    "DeadLetterLimitsFactory",
    "ResultBackendHarness",
    "ResultsEnv",
]

DEFAULT_LEASE_SECONDS: Final = 30.0
"""Lease of brokers opened by tests that do not test leases (long: nothing expires)."""


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


def unique(label: str) -> str:
    """Return ``label`` made unique for this test run (safe as a queue or task id)."""
    return f"chicory-conformance-{uuid.uuid4().hex[:12]}-{label}"


async def _delete_queues(broker: Broker, queues: Sequence[str]) -> None:
    for queue in queues:
        await delete_queue(broker, queue)


class BrokerEnv:
    """What a broker conformance test works with: fresh brokers and private queue names.

    Args:
        harness: The author's harness.
        stack: Closes every broker the test opened, then purges its queues.
    """

    def __init__(self, harness: BrokerHarness, stack: AsyncExitStack) -> None:
        self.harness = harness
        self.capabilities = harness.declared_capabilities()
        self._stack = stack
        self._queues: list[str] = []
        self._brokers: list[Broker] = []
        self._token = uuid.uuid4().hex[:12]
        stack.push_async_callback(self._clean_up)  # first in: runs after everything else

    def queue(self, label: str = "q") -> str:
        """Return a queue name private to this test (same label, same name)."""
        name = f"{self.harness.queue_prefix}-{self._token}-{label}"
        if name not in self._queues:
            self._queues.append(name)
        return name

    @property
    def queues(self) -> list[str]:
        """Every queue name this test used so far."""
        return list(self._queues)

    async def broker(
        self, *, lease_seconds: float = DEFAULT_LEASE_SECONDS, max_deliveries: int | None = None
    ) -> Broker:
        """Open (connect) a fresh broker that is closed when the test ends."""
        broker = self.harness.factory(lease_seconds=lease_seconds, max_deliveries=max_deliveries)
        await broker.connect()
        self._brokers.append(broker)
        self._stack.push_async_callback(broker.close)
        return broker

    async def broker_with_dead_letter_limits(self, *, max_count: int, max_age: float) -> Broker:
        """Open (connect) a fresh broker with these dead-letter limits, closed at the end
        (the guarantees that call this need ``dead_letter_limits``, checked before them)."""
        factory = self.harness.dead_letter_limits
        assert factory is not None, _NO_LIMITS
        broker = factory(max_count=max_count, max_age=max_age)
        await broker.connect()
        self._brokers.append(broker)
        self._stack.push_async_callback(broker.close)
        return broker

    def unconnected_broker(self, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Broker:
        """A fresh broker the test connects itself; closed (and purged) when the test ends."""
        broker = self.harness.factory(lease_seconds=lease_seconds, max_deliveries=None)
        self._brokers.append(broker)
        self._stack.push_async_callback(broker.close)
        return broker

    async def lease_broker(self, *, scale: float = 1.0) -> Broker:
        """Open a broker whose lease is ``scale`` times the harness's ``short_lease``."""
        return await self.broker(lease_seconds=self.harness.short_lease * scale)

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when the test ends (before the brokers opened earlier close)."""
        self._stack.push_async_callback(callback)

    async def sever(self, consumer: Consumer) -> None:
        """Cut ``consumer``'s connection as a network failure would (``BrokerHarness.sever``).

        Raises:
            AssertionError: the harness cannot sever connections (checked before the test
                for the guarantees that need it).
        """
        if self.harness.sever is not None:
            await self.harness.sever(consumer)
            return
        own = getattr(consumer, "sever", None)
        assert callable(own), _NO_SEVER
        await own()

    def purger(self) -> Callable[[Broker, Sequence[str]], Awaitable[None]] | None:
        """The purge that runs after each test: the harness's, else ``delete_queue``."""
        if self.harness.purge is not None:
            return self.harness.purge
        if self.capabilities.delete_queue:
            return _delete_queues
        return None

    async def purge_now(self) -> bool:
        """Run the purge on the test's first broker, connected again; False if there is none.

        Every broker the test opened is closed first, as at the end of a test.
        """
        purge = self.purger()
        if purge is None or not self._brokers:
            return False
        for opened in self._brokers:
            await opened.close()
        broker = self._brokers[0]
        await broker.connect()
        try:
            await purge(broker, list(self._queues))
        finally:
            await broker.close()
        return True

    async def _clean_up(self) -> None:
        if self._queues:
            with anyio.CancelScope(shield=True):
                await self.purge_now()


_NO_LIMITS: Final = (
    "the broker declares dead-letter limits, so its harness must give "
    "BrokerHarness.dead_letter_limits, a factory of brokers with small limits "
    "(docs/conformance.md)"
)

_NO_SEVER: Final = (
    "the harness cannot sever a consumer's connection: set BrokerHarness.sever to an "
    "async function that cuts it as a network failure would, or give the broker's "
    "consumers an async sever() method (docs/conformance.md)"
)


class ResultsEnv:
    """What a result backend conformance test works with.

    Args:
        harness: The author's harness.
        stack: Closes every backend the test opened.
    """

    def __init__(self, harness: ResultBackendHarness, stack: AsyncExitStack) -> None:
        self.harness = harness
        self._stack = stack
        self._ids: list[str] = []

    def task_id(self, label: str = "t") -> str:
        """Return a task (or worker) id no other test uses."""
        name = unique(label)
        self._ids.append(name)
        return name

    async def backend(self) -> ResultBackend:
        """Open (connect) a fresh result backend that is closed when the test ends."""
        backend = self.harness.factory()
        await backend.connect()
        self._stack.push_async_callback(self._dispose, backend)
        return backend

    def unconnected_backend(self) -> ResultBackend:
        """A fresh result backend the test connects itself; closed when the test ends."""
        backend = self.harness.factory()
        self._stack.push_async_callback(self._dispose, backend)
        return backend

    async def _dispose(self, backend: ResultBackend) -> None:
        try:
            if self.harness.purge is not None:
                await self.harness.purge(backend, list(self._ids))
        finally:
            await backend.close()


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
            return None if harness.dead_letter_limits is not None else _NO_LIMITS
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
            return _NO_SEVER
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
