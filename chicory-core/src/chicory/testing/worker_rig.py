"""Plumbing for the end-to-end suite: an app on the broker under test, and running workers.

Workers renew leases exactly as in production: every third of the lease the broker declares
(``Capabilities.lease_seconds``), so a broker that declares a longer lease than it keeps, or
none, loses running work here as it would in production.

:class:`RigBroker` wraps the broker under test when a test must reach what a worker does not
expose: the consumers it opened (to sever a dead worker's connection) or the time its lease
renewals take (to make them land late).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import anyio

from chicory.app import Chicory
from chicory.backend import ResultBackend
from chicory.broker import Broker, Consumer, Delivery
from chicory.result import AsyncResult
from chicory.testing.harness import DEFAULT_LEASE_SECONDS, BrokerEnv
from chicory.testing.requirements import memory_result_backend, missing_result_backend
from chicory.worker import Worker

__all__ = ["RigBroker", "open_app", "result_within", "running", "start_worker"]

_T = TypeVar("_T")


class RigConsumer:
    """A consumer of the broker under test whose lease renewals take ``renew_delay`` longer."""

    def __init__(self, inner: Consumer, renew_delay: float) -> None:
        self.inner = inner
        self.renew_delay = renew_delay

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """The inner consumer's fetch."""
        return await self.inner.fetch(max_count, timeout)

    async def ack_many(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery] | None:
        """The inner consumer's ack_many."""
        return await self.inner.ack_many(deliveries)

    async def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        """Wait ``renew_delay`` (a slow network, a busy server), then renew."""
        await anyio.sleep(self.renew_delay)
        await self.inner.extend_leases(deliveries)

    async def close(self) -> None:
        """The inner consumer's close."""
        await self.inner.close()

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)


class RigBroker:
    """The broker under test, recording the consumers it opens.

    Args:
        inner: The broker under test.
        renew_delay: Seconds each ``extend_leases`` of its consumers waits first.
    """

    def __init__(self, inner: Broker, *, renew_delay: float = 0.0) -> None:
        self.inner = inner
        self.renew_delay = renew_delay
        self.consumers: list[Consumer] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        """Open a consumer on the broker under test (wrapped when renewals are slowed)."""
        consumer = self.inner.consume(queues, prefetch=prefetch)
        self.consumers.append(consumer)
        if self.renew_delay > 0:
            return RigConsumer(consumer, self.renew_delay)
        return consumer

    async def __aenter__(self) -> Self:
        await self.inner.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.close()


def _result_backend(env: BrokerEnv) -> ResultBackend:
    if env.harness.result_backend is not None:
        return env.harness.result_backend()
    backend = memory_result_backend()
    assert backend is not None, missing_result_backend(env.harness)
    return backend


async def open_app(
    env: BrokerEnv,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    rig: bool = False,
    renew_delay: float = 0.0,
) -> Chicory:
    """An app on a fresh broker under test, with a private default queue; closed at the end.

    Args:
        env: The test environment.
        lease_seconds: The lease the broker is built with.
        rig: Wrap the broker in a :class:`RigBroker` (``app.broker``).
        renew_delay: With ``rig``, seconds each lease renewal of a worker waits first.
    """
    broker = await env.broker(lease_seconds=lease_seconds)
    app = Chicory(
        broker=cast(Broker, RigBroker(broker, renew_delay=renew_delay)) if rig else broker,
        backend=_result_backend(env),
        load_entry_points=False,
        default_queue=env.queue("tasks"),
    )
    env.on_close(app.close)
    return app


def start_worker(app: Chicory, **options: Any) -> Worker:
    """A worker on the app's default queue: quick to fetch and stop, production leases."""
    settings: dict[str, Any] = {
        "concurrency": 2,
        "drain_timeout": 5.0,
        "heartbeat_interval": 0,
        "fetch_timeout": 0.2,
        "settle_timeout": 5.0,
    }
    settings.update(options)
    return Worker(app, queues=[app.default_queue], **settings)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Serve ``worker`` in a task group; stop it (gracefully) when the block ends."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        with anyio.fail_after(10):
            await worker.wait_started()
        try:
            yield worker
        finally:
            if not worker.stopping:
                worker.stop()


async def result_within(result: AsyncResult[_T], *, timeout: float, what: str) -> _T:
    """Wait for ``result``; a task that never finishes fails the test in words.

    Args:
        result: The task's result handle.
        timeout: Seconds to wait.
        what: The task, for the failure message ("the at-least-once task").

    Raises:
        AssertionError: the result was not stored within ``timeout``.
    """
    try:
        return await result.get(timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"expected {what} to finish within {timeout:g} s; it did not (was it delivered, "
            "and was its result stored?)"
        ) from None
