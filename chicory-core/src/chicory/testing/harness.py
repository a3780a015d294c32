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
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, Protocol

import attrs

from chicory.backend import ResultBackend
from chicory.broker import Broker, Capabilities
from chicory.testing.guarantees import EnvFactory

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "BrokerEnv",
    "BrokerFactory",
    "BrokerHarness",
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


@attrs.frozen(kw_only=True)
class BrokerHarness:
    """How the conformance suite opens the broker under test.

    Attributes:
        factory: Builds a fresh, unconnected broker (see :class:`BrokerFactory`). Each test
            opens its own brokers and uses queue names no other test uses, so a shared
            server needs no cleaning between tests.
        capabilities: The capabilities to test against; ``None`` reads
            ``factory(...).capabilities``.
        purge: Optional ``async (broker, queues)`` that removes every trace of ``queues``
            after a test (useful for shared servers).
        result_backend: Optional factory of the result backend used by the end-to-end
            suite; ``None`` uses the installed ``memory`` result backend.
        large_body_bytes: Size of the "large body" test message when the broker declares
            no ``max_body_bytes``.
        patience: Seconds the suite waits for something that must happen eventually (a
            redelivery after a lease expired, a delayed message falling due).
        timeout: Seconds one test may take before it fails.
        clock_tolerance: Seconds of clock skew allowed when checking delayed delivery times.
        known_failures: Guarantee ids the broker is known to break, each with why; those
            tests are expected to fail (strict xfail: they fail the run once they pass).
        name: How reports name the broker.
    """

    factory: BrokerFactory
    capabilities: Capabilities | None = None
    purge: Callable[[Broker, Sequence[str]], Awaitable[None]] | None = None
    result_backend: Callable[[], ResultBackend] | None = None
    large_body_bytes: int = 1024 * 1024
    patience: float = 10.0
    timeout: float = 30.0
    clock_tolerance: float = 0.1
    known_failures: Mapping[str, str] = attrs.field(factory=dict)
    name: str = "broker under test"

    def declared_capabilities(self) -> Capabilities:
        """The capabilities tests skip by."""
        if self.capabilities is not None:
            return self.capabilities
        broker = self.factory(lease_seconds=DEFAULT_LEASE_SECONDS, max_deliveries=None)
        return broker.capabilities


@attrs.frozen(kw_only=True)
class ResultBackendHarness:
    """How the conformance suite opens the result backend under test.

    Attributes:
        factory: Builds a fresh, unconnected result backend. Tests use task and worker ids
            no other test uses.
        purge: Optional ``async (backend, task_ids)`` run after a test.
        timeout: Seconds one test may take before it fails.
        known_failures: Guarantee ids the backend is known to break, each with why.
        name: How reports name the backend.
    """

    factory: Callable[[], ResultBackend]
    purge: Callable[[ResultBackend, Sequence[str]], Awaitable[None]] | None = None
    timeout: float = 30.0
    known_failures: Mapping[str, str] = attrs.field(factory=dict)
    name: str = "result backend under test"


def unique(label: str) -> str:
    """Return ``label`` made unique for this test run (safe as a queue or task id)."""
    return f"chicory-conformance-{uuid.uuid4().hex[:12]}-{label}"


class BrokerEnv:
    """What a broker conformance test works with: fresh brokers and private queue names.

    Args:
        harness: The author's harness.
        stack: Closes every broker the test opened, after purging its queues.
    """

    def __init__(self, harness: BrokerHarness, stack: AsyncExitStack) -> None:
        self.harness = harness
        self.capabilities = harness.declared_capabilities()
        self._stack = stack
        self._queues: list[str] = []
        self._token = uuid.uuid4().hex[:12]

    def queue(self, label: str = "q") -> str:
        """Return a queue name private to this test (same label, same name)."""
        name = f"chicory-conformance-{self._token}-{label}"
        if name not in self._queues:
            self._queues.append(name)
        return name

    async def broker(
        self, *, lease_seconds: float = DEFAULT_LEASE_SECONDS, max_deliveries: int | None = None
    ) -> Broker:
        """Open (connect) a fresh broker that is closed when the test ends."""
        broker = self.harness.factory(lease_seconds=lease_seconds, max_deliveries=max_deliveries)
        await broker.connect()
        self._stack.push_async_callback(self._dispose, broker)
        return broker

    def unconnected_broker(self, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Broker:
        """A fresh broker the test connects itself; closed (and purged) when the test ends."""
        broker = self.harness.factory(lease_seconds=lease_seconds, max_deliveries=None)
        self._stack.push_async_callback(self._dispose, broker)
        return broker

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when the test ends (before the brokers opened earlier close)."""
        self._stack.push_async_callback(callback)

    async def _dispose(self, broker: Broker) -> None:
        try:
            if self.harness.purge is not None:
                await self.harness.purge(broker, list(self._queues))
        finally:
            await broker.close()


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
    import pytest

    if not isinstance(value, kind):
        pytest.fail(
            f"fixture {fixture!r} returned {value!r}; it must return a "
            f"chicory.testing.{kind.__name__} (see docs/conformance.md)",
            pytrace=False,
        )


def _missing(capabilities: Capabilities, requires: Sequence[str]) -> str | None:
    for name in requires:
        if not getattr(capabilities, name):
            return (
                f"the broker declares no {name!r} capability "
                f"(Capabilities.{name}={getattr(capabilities, name)!r})"
            )
    return None


class BrokerEnvFactory(EnvFactory):
    """Builds a :class:`BrokerEnv` from the ``chicory_broker_harness`` fixture."""

    fixture = "chicory_broker_harness"

    def skip_reason(self, harness: Any, requires: Sequence[str]) -> str | None:
        """Name the first required capability the harness declares it lacks."""
        check_harness(harness, BrokerHarness, self.fixture)
        return _missing(harness.declared_capabilities(), requires)

    def timeout(self, harness: Any) -> float:
        """The harness's per-test timeout."""
        return float(harness.timeout)

    async def open(self, harness: Any, stack: AsyncExitStack) -> BrokerEnv:
        """A new broker environment."""
        return BrokerEnv(harness, stack)


class ResultsEnvFactory(EnvFactory):
    """Builds a :class:`ResultsEnv` from the ``chicory_result_backend_harness`` fixture."""

    fixture = "chicory_result_backend_harness"

    def skip_reason(self, harness: Any, requires: Sequence[str]) -> str | None:
        """Result backends declare no capabilities: never skip."""
        check_harness(harness, ResultBackendHarness, self.fixture)
        return None

    def timeout(self, harness: Any) -> float:
        """The harness's per-test timeout."""
        return float(harness.timeout)

    async def open(self, harness: Any, stack: AsyncExitStack) -> ResultsEnv:
        """A new result backend environment."""
        return ResultsEnv(harness, stack)


BROKER_ENV: Final = BrokerEnvFactory()
RESULTS_ENV: Final = ResultsEnvFactory()
