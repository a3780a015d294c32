"""Helpers for end-to-end tests: run a worker in the background, wrap brokers to inject faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from chicory import Chicory, Worker
from chicory.backend import ResultBackend, StoredResult
from chicory.broker import Broker, Consumer, Delivery
from chicory.errors import BrokerConnectionError, ResultBackendError


@asynccontextmanager
async def serving(app: Chicory, **options: Any) -> AsyncIterator[Worker]:
    """Run a worker for ``app`` while the block runs; stop (drain) it at the end."""
    settings: dict[str, Any] = {"heartbeat_interval": 0, "fetch_timeout": 0.05, **options}
    worker = Worker(app, **settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        try:
            yield worker
        finally:
            if not worker.stopping:
                worker.stop()


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` (sync or async) is true, failing after ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await anyio.sleep(0.01)


async def drained(broker: Broker, queue: str = "default") -> bool:
    """Whether ``queue`` holds nothing: no ready, in-flight or delayed message."""
    counts = await broker.counts(queue)
    return counts.ready == counts.in_flight == counts.delayed == 0


class Faults:
    """How many more calls of one kind fail (``None``: all of them), and how many were made.

    Args:
        failures: Calls that fail before the broker or backend "answers again".
    """

    def __init__(self, failures: int | None = None) -> None:
        self.failures = failures
        self.attempts = 0

    def hit(self, what: str) -> None:
        """Count one call; raise as a lost connection would while failures remain."""
        self.attempts += 1
        if self.failures is None or self.failures > 0:
            if self.failures is not None:
                self.failures -= 1
            raise BrokerConnectionError(f"simulated: connection lost during {what}")


class _FailingAckDelivery:
    """A delivery whose ``ack`` fails, as if the broker connection dropped."""

    def __init__(self, inner: Delivery, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def ack(self) -> None:
        self._faults.hit("ack")
        await self._inner.ack()

    async def dead_letter(self, reason: str) -> None:
        self._faults.hit("dead-letter")
        await self._inner.dead_letter(reason)


class _WrappingConsumer:
    def __init__(self, inner: Consumer, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        found = await self._inner.fetch(max_count, timeout)
        return [_FailingAckDelivery(d, self._faults) for d in found]  # type: ignore[misc]

    async def ack_many(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery] | None:
        self._faults.hit("ack")
        inner = [d._inner if isinstance(d, _FailingAckDelivery) else d for d in deliveries]
        lost = await self._inner.ack_many(inner)
        return [d for d in deliveries if any(x is getattr(d, "_inner", d) for x in lost or ())]

    async def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        inner = [d._inner if isinstance(d, _FailingAckDelivery) else d for d in deliveries]
        await self._inner.extend_leases(inner)

    async def __aenter__(self) -> _WrappingConsumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.close()


class FailingAckBroker:
    """Delegates to a real broker, except that acks (and dead-letters) fail: all of them,
    or the first ``failures``, as if the connection dropped and came back."""

    def __init__(self, inner: Broker, failures: int | None = None) -> None:
        self._inner = inner
        self.faults = Faults(failures)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        return _WrappingConsumer(self._inner.consume(queues, prefetch=prefetch), self.faults)  # type: ignore[return-value]

    async def publish(
        self, queue: str, body: bytes, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> str:
        return await self._inner.publish(queue, body, headers, **kw)


class FailingStoreBackend:
    """Delegates to a real result backend, except that the first ``failures`` writes fail
    as if the connection dropped."""

    def __init__(self, inner: ResultBackend, failures: int) -> None:
        self._inner = inner
        self.faults = Faults(failures)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        self._hit()
        await self._inner.store(task_id, data, final=final, ttl=ttl)

    async def store_many(self, records: Sequence[StoredResult], *, ttl: float) -> None:
        self._hit()
        await self._inner.store_many(records, ttl=ttl)

    def _hit(self) -> None:
        try:
            self.faults.hit("result write")
        except BrokerConnectionError as exc:
            raise ResultBackendError(str(exc)) from None
