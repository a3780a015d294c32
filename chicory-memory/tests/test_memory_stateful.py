"""Random sequences of broker operations keep the memory broker's books balanced.

Invariants checked after every step, whatever happened before:

* nothing is lost or invented: ready + in flight + delayed + dead always equals what was
  published, minus what was acked or dropped, plus copies recorded by ``dead_letter``
  after ``ack`` (a retry replaces one message with one);
* no message is held by two deliveries at once, or held and waiting at the same time;
* no consumer holds more than its prefetch, and ``in_flight`` counts exactly the held ones;
* a delivery's count is the number of times its message has been fetched.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from chicory.broker import OutgoingMessage
from chicory.clock import ManualClock
from chicory.errors import DeliveryStateError
from chicory_memory.broker import MemoryBroker
from chicory_memory.consumer import MemoryConsumer
from chicory_memory.delivery import MemoryDelivery
from chicory_memory.model import MESSAGE_ID, DeliveryState

T = TypeVar("T")
QUEUES = ("a", "b")
LEASE = 10.0
SETTLES = ["ack", "nack", "nack later", "drop", "dead", "retry", "renew"]


class BrokerMachine(RuleBasedStateMachine):
    """Drives one broker on a manual clock; ``max_deliveries=4`` buries crash loops."""

    consumers = Bundle("consumers")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.broker = MemoryBroker(lease_seconds=LEASE, max_deliveries=4, clock=self.clock)
        self.run(self.broker.connect())
        self.published = 0
        self.removed = 0  # acked or dropped
        self.copies = 0  # dead_letter after ack
        self.fetches: Counter[str] = Counter()
        self.deliveries: list[MemoryDelivery] = []
        self.opened: list[MemoryConsumer] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.broker.close())
        self.loop.close()

    @rule(queue=st.sampled_from(QUEUES), n=st.integers(1, 4), delay=st.sampled_from([0, 0, 5]))
    def publish(self, queue: str, n: int, delay: int) -> None:
        when = datetime.fromtimestamp(self.clock.time(), UTC) + timedelta(seconds=delay)
        messages = [OutgoingMessage(body=b"x", not_before=when if delay else None)] * n
        self.run(self.broker.publish_many(queue, messages))
        self.published += n

    @rule(
        target=consumers,
        queues=st.sampled_from([("a",), ("b",), ("a", "b")]),
        prefetch=st.integers(1, 3),
    )
    def open_consumer(self, queues: tuple[str, ...], prefetch: int) -> MemoryConsumer:
        consumer = self.broker.consume(list(queues), prefetch=prefetch)
        self.opened.append(consumer)
        return consumer

    @rule(consumer=consumers, n=st.integers(1, 4))
    def fetch(self, consumer: MemoryConsumer, n: int) -> None:
        if consumer.closed:
            return
        got = self.run(consumer.fetch(n, timeout=0))
        for delivery in got:
            self.fetches[delivery.message_id] += 1
            assert delivery.delivery_count == self.fetches[delivery.message_id]
        self.deliveries.extend(got)

    @rule(consumer=consumers)
    def close_consumer(self, consumer: MemoryConsumer) -> None:
        self.run(consumer.close())

    @rule(seconds=st.sampled_from([1.0, 5.0, LEASE]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.deliveries))
    @rule(data=st.data(), action=st.sampled_from(SETTLES))
    def settle(self, data: st.DataObject, action: str) -> None:
        delivery = data.draw(st.sampled_from(self.deliveries))
        before = delivery.state
        try:
            self.run(self._settle(delivery, action))
        except DeliveryStateError:
            assert before in {DeliveryState.HANDED_BACK, DeliveryState.EXPIRED}
            return
        if before is DeliveryState.HELD and action in {"ack", "drop"}:
            self.removed += 1
        if before is DeliveryState.ACKED and action == "dead":
            self.copies += 1
        if before is not DeliveryState.HELD:
            assert delivery.state is before or (
                before is DeliveryState.ACKED and delivery.state is DeliveryState.SETTLED
            ), "a delivery that was not held changed the books"

    @staticmethod
    async def _settle(delivery: MemoryDelivery, action: str) -> None:
        if action == "ack":
            await delivery.ack()
        elif action == "nack":
            await delivery.nack()
        elif action == "nack later":
            await delivery.nack(delay=3.0)
        elif action == "drop":
            await delivery.nack(requeue=False)
        elif action == "dead":
            await delivery.dead_letter("test")
        elif action == "retry":
            await delivery.retry(b"y", {}, not_before=None)
        else:
            await delivery.extend_lease()

    @invariant()
    def nothing_is_lost_or_invented(self) -> None:
        counts = [self.run(self.broker.counts(q)) for q in QUEUES]
        total = sum(c.ready + c.in_flight + c.delayed + c.dead for c in counts)
        assert total == self.published - self.removed + self.copies
        held = [d.message_id for d in self.deliveries if d.state is DeliveryState.HELD]
        assert sum(c.in_flight for c in counts) == len(held)

    @invariant()
    def a_message_is_in_one_place(self) -> None:
        held = [d.message_id for d in self.deliveries if d.state is DeliveryState.HELD]
        waiting = [
            message[MESSAGE_ID]
            for queue in self.broker._store.queues.values()
            for message in [*queue.ready, *(entry[2] for entry in queue.delayed)]
        ]
        assert len(set(held)) == len(held)
        assert not set(held) & set(waiting)
        assert len(set(waiting)) == len(waiting)

    @invariant()
    def prefetch_is_respected(self) -> None:
        for consumer in self.opened:
            assert consumer.held <= consumer._sub.prefetch
            assert not (consumer.closed and consumer.held)


TestBrokerMachine = BrokerMachine.TestCase
TestBrokerMachine.settings = settings(max_examples=75, stateful_step_count=40, deadline=None)
