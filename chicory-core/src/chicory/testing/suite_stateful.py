"""A stateful, property-based comparison of the broker under test with the memory broker.

Hypothesis drives random sequences of publish / fetch / ack / nack / dead-letter / replay /
delete / purge / consumer close operations against both brokers at once and, after every
step, compares what each observably did: the messages delivered (body, headers, delivery
count), the queue counts and the dead letters. The memory broker (``chicory-memory``,
installed with ``chicory-core[testing]``) is the oracle, with the lease model the broker
under test declares; it is found through the ``chicory`` entry points, so core imports no
broker. Without it (or without Hypothesis) the test is an ERROR naming what to install.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal

from chicory.broker import Broker
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.requirements import memory_broker_factory, missing_oracle

__all__ = ["BrokerStatefulSuite"]

FOUNDATIONS = (
    "broker.counts",
    "settle.ack_removes",
    "settle.ack_many",
    "settle.nack_requeue",
    "settle.nack_drop",
    "delivery.redeliver_on_close",
    "deadletter.move_and_list",
    "deadletter.replay_fresh",
    "deadletter.purge",
)


class BrokerStatefulSuite:
    """Subclass with an empty body.

    Class attributes a subclass may override: ``stateful_examples`` (operation sequences
    tried), ``stateful_steps`` (longest sequence) and ``stateful_derandomize`` (the same
    sequences on every run, for reproducible CI).
    """

    stateful_examples: int = 20
    stateful_steps: int = 40
    stateful_derandomize: bool = False

    @guarantee(
        "stateful.matches_memory_oracle",
        Level.MUST,
        env=BROKER_ENV,
        needs=("oracle",),
        rests_on=FOUNDATIONS,
        time_scale=4,  # many operation sequences, each against the broker and the oracle
    )
    async def test_matches_memory_oracle(self, env: BrokerEnv) -> None:
        """MUST behave like the reference memory broker over random operation sequences."""
        factory = memory_broker_factory()
        assert factory is not None, missing_oracle()
        url = f"memory://?lease_model={env.capabilities.lease_model}"

        def oracle() -> Broker:
            broker: Broker = factory(url)
            return broker

        from hypothesis import HealthCheck, settings
        from hypothesis.stateful import run_state_machine_as_test

        from chicory.testing.stateful_machine import Pair, build_machine

        examples = 0

        async def open_pair() -> Pair:
            nonlocal examples
            examples += 1
            sut = await env.broker()
            reference = oracle()
            await reference.connect()
            return Pair(sut=sut, oracle=reference, queue=env.queue(f"s{examples}"))

        async with BlockingPortal() as portal:

            def call(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
                return portal.call(fn, *args)

            machine = build_machine(call=call, open_pair=open_pair, capabilities=env.capabilities)
            config = settings(
                max_examples=self.stateful_examples,
                stateful_step_count=self.stateful_steps,
                deadline=None,
                database=None,
                derandomize=self.stateful_derandomize,
                suppress_health_check=list(HealthCheck),
            )
            await anyio.to_thread.run_sync(
                lambda: run_state_machine_as_test(machine, settings=config),
                abandon_on_cancel=True,
            )
