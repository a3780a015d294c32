"""Deliberately broken brokers: the ``conftest.py`` of the suite's self-tests (not a test module).

``test_conformance_broken.py`` copies this file into a throw-away pytest project and runs the
conformance suite in it, as a plugin author would. Each broker is a thin wrapper around the
memory broker with one defect, chosen by ``CHICORY_TEST_DEFECT`` (``none``: no defect, the
control). ``CHICORY_TEST_HARNESS`` picks the harness: ``timed`` (default), ``session``
(session-bound leases), ``slow3`` (a 3 s lease for the lease tests) or ``purge`` (an explicit
harness purge). Defects reach into the memory broker's internals where a real broker would
get the same thing wrong in its own code.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio
import attrs
import pytest

from chicory.broker import delete_queue
from chicory.testing import BrokerHarness
from chicory_memory.broker import MemoryBroker
from chicory_memory.model import DeliveryState, QueueState


def defect() -> str:
    return os.environ.get("CHICORY_TEST_DEFECT", "none")


def _lost(delivery: Any) -> bool:
    """Whether a memory delivery's lease was lost (its message went back or elsewhere)."""
    return bool(delivery._held.state is DeliveryState.EXPIRED)


class Delivery:
    def __init__(self, inner: Any, consumer: Consumer) -> None:
        self.inner = inner
        self.consumer = consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _store(self) -> Any:
        return self.inner._store

    @property
    def delivery_count(self) -> int:
        if defect() == "count_stuck":  # every delivery claims to be the first
            return 1
        return int(self.inner.delivery_count)

    async def ack(self) -> None:
        if defect() in ("noop_ack", "duplicates"):
            return
        if defect() == "stale_settle_acts" and _lost(self.inner):
            newest = self.consumer.newest.get(self.inner.message_id)
            if newest is not None:  # a reused delivery tag: it acks the new delivery
                await newest.inner.ack()
            return
        await self.inner.ack()

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        if defect() == "delays_ignored":
            delay = None
        if defect() == "lost_nack_requeues" and requeue and _lost(self.inner):
            held = self.inner._held
            await self.consumer.broker.publish(held.queue.name, self.inner.body, self.headers)
            return
        if defect() == "nack_to_front" and requeue and not delay:
            store, held = self._store(), self.inner._held
            if held.state is DeliveryState.HELD:
                store._release(held, DeliveryState.SETTLED)
                store.give_back([held], self.inner._clock.time(), front=True)
            return
        await self.inner.nack(requeue=requeue, delay=delay)

    async def extend_lease(self, seconds: float | None = None) -> None:
        if defect() == "extend_ignored":
            return
        if defect() == "extend_half":
            seconds = self._store().lease_seconds / 2
        await self.inner.extend_lease(seconds)

    async def retry(self, body: bytes, headers: Any, *, not_before: Any) -> None:
        if defect() == "delays_ignored":
            not_before = None
        if defect() == "lost_retry_publishes" and _lost(self.inner):
            await self.consumer.broker.publish(self.inner.queue, body, headers)
            return
        await self.inner.retry(body, headers, not_before=not_before)

    async def dead_letter(self, reason: str) -> None:
        if defect() == "lost_dead_letter_records" and _lost(self.inner):
            held, store = self.inner._held, self._store()
            store.bury(held.queue, held.message, reason, held.count, self.inner._clock.time())
            return
        await self.inner.dead_letter(reason)


class Consumer:
    def __init__(self, inner: Any, broker: Broker, prefetch: int) -> None:
        self.inner = inner
        self.broker = broker
        self.prefetch = prefetch
        self.closed = False
        self.newest: dict[str, Delivery] = {}

    async def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        if defect() == "fetch_closed_empty" and self.closed:
            return []
        if defect() == "full_fetch_sleeps" and self.inner.held >= self.prefetch:
            await anyio.sleep(timeout)  # sleeps through any room freed meanwhile
            timeout = 0
        got = await self.inner.fetch(max_count, timeout)
        if defect() == "duplicates":  # hand it straight back: the next consumer gets it too
            for delivery in got:
                await delivery.nack(requeue=True)
        wrapped = [Delivery(d, self) for d in got]
        self.newest.update((d.message_id, d) for d in wrapped)
        return wrapped

    async def ack_many(self, deliveries: list[Delivery]) -> list[Delivery]:
        if defect() in ("noop_ack", "duplicates", "stale_settle_acts"):
            for delivery in deliveries:
                await delivery.ack()
            return []
        lost = await self.inner.ack_many([d.inner for d in deliveries])
        if defect() == "lost_lease_unreported":
            return []
        return [d for d in deliveries if any(d.inner is gone for gone in lost)]

    async def extend_leases(self, deliveries: list[Delivery]) -> None:
        if defect() in ("extend_ignored", "extend_half"):
            for delivery in deliveries:
                await delivery.extend_lease()
            return
        await self.inner.extend_leases([d.inner for d in deliveries])

    async def sever(self) -> None:
        if defect() != "sever_keeps":
            await self.inner.sever()

    async def close(self) -> None:
        self.closed = True
        if defect() != "lost_on_close":  # the inner consumer keeps its deliveries until the lease
            await self.inner.close()

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Broker:
    def __init__(self, inner: MemoryBroker, lease_seconds: float) -> None:
        self.inner = inner
        self.lease_seconds = lease_seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def capabilities(self) -> Any:
        declared = self.inner.capabilities
        if defect() == "lease_undeclared":
            return attrs.evolve(declared, lease_seconds=None)
        if defect() == "lease_short":
            return attrs.evolve(declared, lease_seconds=self.lease_seconds)
        if defect() == "session_times_out":
            return attrs.evolve(
                declared, lease_model="session", lease_renewal=False, lease_seconds=None
            )
        return declared

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if defect() == "loop_bound":  # keeps a client of the first loop it connected on
            if getattr(self, "loop", None) is not None:
                return
            self.loop = asyncio.get_running_loop()
        await self.inner.connect()

    async def close(self) -> None:
        if defect() == "loop_bound" and getattr(self, "loop", None) is not None:
            if self.loop is not asyncio.get_running_loop():
                raise RuntimeError("Event loop is closed")  # and forgets nothing
            self.loop = None
        await self.inner.close()

    async def publish(
        self, queue: str, body: bytes, headers: Any = None, *, not_before: Any = None
    ) -> str:
        if defect() == "delays_ignored":
            not_before = None
        loop = getattr(self, "loop", None)
        if defect() == "loop_bound" and loop not in (None, asyncio.get_running_loop()):
            raise RuntimeError("Event loop is closed")
        return await self.inner.publish(queue, body, headers, not_before=not_before)

    def consume(self, queues: list[str], *, prefetch: int) -> Consumer:
        return Consumer(self.inner.consume(queues, prefetch=prefetch), self, prefetch)

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        if defect() != "replay_keeps_count":
            return await self.inner.replay_dead_letter(queue, dead_letter_id)
        state = self.inner._store.queues.get(queue)
        letter = state.dead.pop(dead_letter_id, None) if state is not None else None
        if letter is None:
            return False
        message = ("kept-" + letter.id, letter.body, tuple(letter.headers.items()))
        state.ready.append((*message, letter.delivery_count))
        state.wake()
        return True

    async def delete_queue(self, queue: str) -> None:
        store = self.inner._store
        delayed = store.queues[queue].delayed if queue in store.queues else []
        await self.inner.delete_queue(queue)
        if defect() == "delete_keeps_delayed" and delayed:
            store.queues[queue] = QueueState(queue)
            store.queues[queue].delayed = delayed


def build(*, lease_seconds: float, max_deliveries: int | None) -> Broker:
    real = lease_seconds
    if defect() == "lease_ignored":
        real = 3600.0
    if defect() == "lease_short":
        real = lease_seconds / 4
    model = "session" if os.environ.get("CHICORY_TEST_HARNESS") == "session" else "timed"
    if defect() == "session_times_out":  # declares session leases, keeps timed ones
        model = "timed"
    inner = MemoryBroker(lease_seconds=real, max_deliveries=max_deliveries, lease_model=model)
    return Broker(inner, lease_seconds)


def limited(*, max_count: int, max_age: float) -> Broker:
    if defect() == "dead_letters_unbounded":  # declares limits, keeps every dead letter
        inner = MemoryBroker(dead_letter_max_count=None, dead_letter_max_age=None)
    else:
        inner = MemoryBroker(dead_letter_max_count=max_count, dead_letter_max_age=max_age)
    return Broker(inner, inner.capabilities.lease_seconds or 30.0)


async def purge(broker: Any, queues: list[str]) -> None:
    if defect() == "purge_noop":
        return
    for queue in queues:
        await delete_queue(broker, queue)


@pytest.fixture
def chicory_broker_harness() -> BrokerHarness:
    kind = os.environ.get("CHICORY_TEST_HARNESS", "timed")
    options: dict[str, Any] = {"factory": build, "patience": 2.0, "dead_letter_limits": limited}
    if kind == "slow3":
        options.update(short_lease=3.0, patience=10.0)
    if kind == "purge":
        options["purge"] = purge
    return BrokerHarness(**options)
