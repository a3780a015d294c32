"""Test environments: what one conformance test works with, and what it leaves behind.

A :class:`BrokerEnv` opens fresh brokers from the author's
:class:`~chicory.testing.BrokerHarness`, hands out queue names private to the test, and at
the end closes every broker it opened and purges the test's queues (the purge contract of
:mod:`chicory.testing.harness`). A :class:`ResultsEnv` does the same for result backends. The
pytest plugin builds one per test through the factories in :mod:`chicory.testing.harness`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Final

import anyio

from chicory.backend import ResultBackend
from chicory.broker import Broker, Consumer, delete_queue
from chicory.testing.requirements import NO_DEAD_LETTER_LIMITS, NO_SEVER

if TYPE_CHECKING:
    from chicory.testing.harness import BrokerHarness, ResultBackendHarness

__all__ = ["DEFAULT_LEASE_SECONDS", "BrokerEnv", "ResultsEnv", "delete_queues", "unique"]

DEFAULT_LEASE_SECONDS: Final = 30.0
"""Lease of brokers opened by tests that do not test leases (long: nothing expires)."""


def unique(label: str) -> str:
    """Return ``label`` made unique for this test run (safe as a queue or task id)."""
    return f"chicory-conformance-{uuid.uuid4().hex[:12]}-{label}"


async def delete_queues(broker: Broker, queues: Sequence[str]) -> None:
    """The default purge: delete each of ``queues`` (for brokers declaring ``delete_queue``)."""
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
        assert factory is not None, NO_DEAD_LETTER_LIMITS
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
        assert callable(own), NO_SEVER
        await own()

    def purger(self) -> Callable[[Broker, Sequence[str]], Awaitable[None]] | None:
        """The purge that runs after each test: the harness's, else ``delete_queue``."""
        if self.harness.purge is not None:
            return self.harness.purge
        if self.capabilities.delete_queue:
            return delete_queues
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
