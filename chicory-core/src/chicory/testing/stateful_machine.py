"""The Hypothesis state machine behind ``stateful.matches_memory_oracle``.

Each step runs one operation on the broker under test and on the oracle (through ``call``,
which executes a coroutine function on the test's event loop) and compares the outcomes.
Bodies are unique, so deliveries of the two brokers are paired by body; every fetch takes
everything that is ready, so brokers that are not FIFO compare equal too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import attrs
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from chicory.broker import Broker, Capabilities, Consumer, Delivery, OutgoingMessage

__all__ = ["Pair", "build_machine"]

SLOTS = (0, 1)
QUIET = 0.02


@attrs.define(kw_only=True)
class Pair:
    """The broker under test and the oracle, with the queue this example uses."""

    sut: Broker
    oracle: Broker
    queue: str


async def _drain(consumer: Consumer, expected: int, quiet: float) -> list[Delivery]:
    """Everything ready: wait for ``expected`` deliveries, then listen ``quiet`` for extras."""
    got: list[Delivery] = []
    deadline = anyio.current_time() + 2.0
    while len(got) < expected and anyio.current_time() < deadline:
        got.extend(await consumer.fetch(1000, timeout=max(0.01, deadline - anyio.current_time())))
    got.extend(await consumer.fetch(1000, timeout=quiet))
    return got


def _view(deliveries: list[Delivery]) -> list[tuple[Any, ...]]:
    return sorted((d.body, sorted(d.headers.items()), d.delivery_count) for d in deliveries)


def build_machine(
    *,
    call: Callable[..., Any],
    open_pair: Callable[[], Awaitable[Pair]],
    capabilities: Capabilities,
) -> type[RuleBasedStateMachine]:
    """Return a state machine class comparing a fresh broker pair per example.

    Args:
        call: Runs ``async fn(*args)`` on the test's event loop and returns its result.
        open_pair: Opens a fresh broker under test and a fresh oracle.
        capabilities: What the broker under test declares (gates dead-letter rules).
    """
    dead_letters = capabilities.dead_letter

    class BrokerVersusOracle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.pair: Pair = call(open_pair)
            self.consumers: dict[int, tuple[Consumer, Consumer]] = {}
            self.held: dict[bytes, tuple[int, Delivery, Delivery]] = {}
            self.dead: set[bytes] = set()
            self.counter = 0

        # -- operations ---------------------------------------------------------------

        @rule(headers=st.dictionaries(st.sampled_from(["a", "b", "ü"]), st.text(max_size=5)))
        def publish(self, headers: dict[str, str]) -> None:
            body = f"body-{self.counter}".encode()
            self.counter += 1
            for broker in (self.pair.sut, self.pair.oracle):
                call(broker.publish, self.pair.queue, body, headers)

        @rule(count=st.integers(min_value=1, max_value=4))
        def publish_many(self, count: int) -> None:
            messages = [
                OutgoingMessage(body=f"body-{self.counter + i}".encode(), headers={"i": str(i)})
                for i in range(count)
            ]
            self.counter += count
            for broker in (self.pair.sut, self.pair.oracle):
                call(broker.publish_many, self.pair.queue, messages)

        @initialize()
        def first_consumer(self) -> None:
            self.open_consumer()

        @precondition(lambda self: len(self.consumers) < len(SLOTS))
        @rule()
        def open_consumer(self) -> None:
            slot = min(set(SLOTS) - set(self.consumers))

            async def open_both() -> tuple[Consumer, Consumer]:
                sut = self.pair.sut.consume([self.pair.queue], prefetch=1000)
                oracle = self.pair.oracle.consume([self.pair.queue], prefetch=1000)
                return await sut.__aenter__(), await oracle.__aenter__()

            self.consumers[slot] = call(open_both)

        @precondition(lambda self: bool(self.consumers))
        @rule(data=st.data())
        def close_consumer(self, data: st.DataObject) -> None:
            slot = data.draw(st.sampled_from(sorted(self.consumers)))
            pair = self.consumers.pop(slot)
            for consumer in pair:
                call(consumer.close)
            self.held = {b: h for b, h in self.held.items() if h[0] != slot}

        @precondition(lambda self: bool(self.consumers))
        @rule(data=st.data())
        def fetch(self, data: st.DataObject) -> None:
            slot = data.draw(st.sampled_from(sorted(self.consumers)))
            sut_consumer, oracle_consumer = self.consumers[slot]
            expected = call(_drain, oracle_consumer, 0, 0.0)
            got = call(_drain, sut_consumer, len(expected), QUIET)
            assert _view(got) == _view(expected), (
                f"fetch delivered differently from the memory broker: the broker delivered "
                f"(body, headers, delivery count) {_view(got)}, the memory broker "
                f"{_view(expected)}"
            )
            by_body = {d.body: d for d in got}
            for delivery in expected:
                self.held[delivery.body] = (slot, by_body[delivery.body], delivery)

        def _settle(self, body: bytes, op: Callable[[Delivery], Awaitable[None]]) -> None:
            _, sut, oracle = self.held.pop(body)
            call(op, sut)
            call(op, oracle)

        @precondition(lambda self: bool(self.held))
        @rule(data=st.data())
        def ack(self, data: st.DataObject) -> None:
            self._settle(data.draw(st.sampled_from(sorted(self.held))), _ack)

        @precondition(lambda self: bool(self.held))
        @rule(data=st.data())
        def ack_all(self, data: st.DataObject) -> None:
            slot = data.draw(st.sampled_from(sorted({held[0] for held in self.held.values()})))
            mine = [body for body, held in self.held.items() if held[0] == slot]
            for index, consumer in enumerate(self.consumers[slot]):
                call(consumer.ack_many, [self.held[body][index + 1] for body in mine])
            for body in mine:
                del self.held[body]

        @precondition(lambda self: bool(self.held))
        @rule(data=st.data(), requeue=st.booleans())
        def nack(self, data: st.DataObject, requeue: bool) -> None:
            self._settle(data.draw(st.sampled_from(sorted(self.held))), _nack if requeue else _drop)

        @precondition(lambda self: dead_letters and bool(self.held))
        @rule(data=st.data())
        def dead_letter(self, data: st.DataObject) -> None:
            body = data.draw(st.sampled_from(sorted(self.held)))
            self._settle(body, _dead_letter)
            self.dead.add(body)

        @precondition(lambda self: dead_letters and bool(self.dead))
        @rule(data=st.data(), replay=st.booleans())
        def replay_or_delete(self, data: st.DataObject, replay: bool) -> None:
            body = data.draw(st.sampled_from(sorted(self.dead)))
            outcomes = []
            for broker in (self.pair.sut, self.pair.oracle):
                (dead,) = [d for d in call(broker.dead_letters, self.pair.queue) if d.body == body]
                op = broker.replay_dead_letter if replay else broker.delete_dead_letter
                outcomes.append(call(op, self.pair.queue, dead.id))
            assert outcomes == [True, True], (
                f"{'replay' if replay else 'delete'} of a listed dead letter returned "
                f"{outcomes[0]} on the broker, {outcomes[1]} on the memory broker"
            )
            self.dead.discard(body)

        @precondition(lambda self: dead_letters)
        @rule()
        def purge(self) -> None:
            purged = [
                call(broker.purge_dead_letters, self.pair.queue)
                for broker in (self.pair.sut, self.pair.oracle)
            ]
            assert purged[0] == purged[1], (
                f"purge_dead_letters returned {purged[0]} on the broker, {purged[1]} on the "
                "memory broker"
            )
            self.dead.clear()

        # -- comparisons --------------------------------------------------------------

        @invariant()
        def same_counts(self) -> None:
            sut = call(self.pair.sut.counts, self.pair.queue)
            oracle = call(self.pair.oracle.counts, self.pair.queue)
            assert sut == oracle, f"counts differ: broker {sut}, memory broker {oracle}"

        @invariant()
        def same_dead_letters(self) -> None:
            if not dead_letters:
                return
            views = [
                sorted(
                    (d.body, sorted(d.headers.items()), d.reason)
                    for d in call(partial(broker.dead_letters, self.pair.queue, limit=1000))
                )
                for broker in (self.pair.sut, self.pair.oracle)
            ]
            assert views[0] == views[1], (
                f"dead letters differ: the broker lists (body, headers, reason) {views[0]}, "
                f"the memory broker {views[1]}"
            )

        def teardown(self) -> None:
            for pair in self.consumers.values():
                for consumer in pair:
                    call(consumer.close)
            call(self.pair.sut.close)
            call(self.pair.oracle.close)

    return BrokerVersusOracle


async def _ack(delivery: Delivery) -> None:
    await delivery.ack()


async def _nack(delivery: Delivery) -> None:
    await delivery.nack(requeue=True)


async def _drop(delivery: Delivery) -> None:
    await delivery.nack(requeue=False)


async def _dead_letter(delivery: Delivery) -> None:
    await delivery.dead_letter("dead-lettered by the state machine")
