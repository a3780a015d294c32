"""Helpers for end-to-end tests: run a worker in the background, wrap brokers to inject faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from chicory import Chicory, Worker
from chicory.broker import Broker, Consumer, Delivery
from chicory.errors import BrokerConnectionError


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


class _FailingAckDelivery:
    """A delivery whose ``ack`` always fails, as if the broker connection dropped."""

    def __init__(self, inner: Delivery) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def ack(self) -> None:
        raise BrokerConnectionError("simulated: connection lost during ack")


class _WrappingConsumer:
    def __init__(self, inner: Consumer) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        return [_FailingAckDelivery(d) for d in await self._inner.fetch(max_count, timeout)]  # type: ignore[misc]

    async def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        raise BrokerConnectionError("simulated: connection lost during ack")

    async def __aenter__(self) -> _WrappingConsumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.close()


class FailingAckBroker:
    """Delegates to a real broker, except that every ack fails."""

    def __init__(self, inner: Broker) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        return _WrappingConsumer(self._inner.consume(queues, prefetch=prefetch))  # type: ignore[return-value]

    async def publish(
        self, queue: str, body: bytes, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> str:
        return await self._inner.publish(queue, body, headers, **kw)
