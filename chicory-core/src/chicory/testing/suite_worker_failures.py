"""End to end through the real core worker: what happens to a task that fails.

A task that raises runs again (attempt + 1) after its retry policy's backoff, in both
delivery modes, until it succeeds or its retries run out; then its FAILURE is recorded and it
is dead-lettered with the error as the reason. A message the worker cannot decode is
dead-lettered too, and the worker keeps working.

Mixed into :class:`~chicory.testing.WorkerSuite`.
"""

from __future__ import annotations

import pytest

from chicory.clock import utcnow
from chicory.context import TaskContext
from chicory.errors import TaskFailedError
from chicory.modes import DeliveryMode
from chicory.retry import RetryPolicy
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import expect_counts
from chicory.testing.worker_rig import open_app, result_within, running, start_worker

__all__ = ["FailingTasks"]

AREA = "WorkerSuite"
MUST = Level.MUST
AMO, ALO = DeliveryMode.AT_MOST_ONCE, DeliveryMode.AT_LEAST_ONCE
RESULTS = ("result_backend",)
WORKS = ("broker.round_trip", "settle.ack_removes")


class FailingTasks:
    """Guarantees of :class:`~chicory.testing.WorkerSuite` about tasks that raise (and
    messages that cannot be decoded)."""

    @guarantee(
        "worker.retries",
        MUST,
        env=BROKER_ENV,
        needs=RESULTS,
        rests_on=(*WORKS, "settle.retry"),
        area=AREA,
    )
    async def test_retries(self, env: BrokerEnv) -> None:
        """MUST run a failing task again, attempt + 1, until it succeeds, in both modes."""
        app = await open_app(env)
        policy = RetryPolicy(max_retries=2, delay=0)
        for mode in (AMO, ALO):

            @app.task(
                name=f"conformance.flaky.{mode.value}", delivery_mode=mode, retry_policy=policy
            )
            async def flaky(ctx: TaskContext) -> int:
                if ctx.attempt < 3:
                    raise ValueError(f"attempt {ctx.attempt} fails")
                return ctx.attempt

            async with running(start_worker(app)):
                attempt = await result_within(
                    await flaky.delay(), timeout=10, what=f"the {mode.value} task failing twice"
                )
                assert attempt == 3, f"{mode.value}: the task succeeded on attempt {attempt}, not 3"
        await expect_counts(
            app.broker,
            app.default_queue,
            what="after both tasks succeeded on their third attempt",
            ready=0,
            in_flight=0,
            dead=0,
        )

    @guarantee(
        "worker.retry_delay",
        MUST,
        env=BROKER_ENV,
        requires=("delayed_delivery",),
        needs=RESULTS,
        rests_on=(*WORKS, "delivery.delayed_not_before"),
        area=AREA,
    )
    async def test_retry_delay(self, env: BrokerEnv) -> None:
        """MUST not start a retry before its backoff delay has passed."""
        app = await open_app(env)
        starts: list[float] = []

        @app.task(
            name="conformance.backoff",
            delivery_mode=ALO,
            retry_policy=RetryPolicy(max_retries=1, backoff="fixed", delay=1.0),
        )
        async def backoff() -> None:
            starts.append(utcnow().timestamp())
            if len(starts) == 1:
                raise ValueError("first attempt fails")

        async with running(start_worker(app)):
            await result_within(await backoff.delay(), timeout=15, what="a task retried after 1 s")
        gap = starts[1] - starts[0]
        assert gap >= 1.0 - env.harness.clock_tolerance, (
            f"a retry with a 1 s backoff started {gap:.3f} s after the failed attempt"
        )

    @guarantee(
        "worker.dead_letter_exhausted",
        MUST,
        env=BROKER_ENV,
        requires=("dead_letter",),
        needs=RESULTS,
        rests_on=(*WORKS, "deadletter.move_and_list", "deadletter.after_ack_copy"),
        area=AREA,
    )
    async def test_dead_letter_exhausted(self, env: BrokerEnv) -> None:
        """MUST record FAILURE and dead-letter with a reason once retries are exhausted."""
        app = await open_app(env)
        runs: list[str] = []
        for mode in (AMO, ALO):

            @app.task(
                name=f"conformance.doomed.{mode.value}",
                delivery_mode=mode,
                retry_policy=RetryPolicy(max_retries=1, delay=0),
            )
            async def doomed(ctx: TaskContext) -> None:
                runs.append(ctx.task_name)
                raise ValueError("boom")

            async with running(start_worker(app)):
                with pytest.raises(TaskFailedError) as failure:
                    await (await doomed.delay()).get(timeout=10)
                assert failure.value.exc_message == "boom", (
                    f"the recorded failure is {failure.value}, not the task's ValueError('boom')"
                )
        names = [f"conformance.doomed.{m.value}" for m in (AMO, ALO)]
        assert sorted(runs) == sorted(names * 2), f"expected 2 attempts per mode; ran {runs}"
        dead = await app.broker.dead_letters(app.default_queue)
        reasons = [d.reason for d in dead]
        named = len(dead) == 2 and all("boom" in r for r in reasons)
        assert named, (
            f"expected 2 dead letters whose reasons name the error 'boom'; listed {reasons}"
        )
        await expect_counts(
            app.broker,
            app.default_queue,
            what="after both tasks were dead-lettered",
            ready=0,
            in_flight=0,
            dead=2,
        )

    @guarantee(
        "worker.poison_dead_lettered",
        MUST,
        env=BROKER_ENV,
        requires=("dead_letter",),
        needs=RESULTS,
        rests_on=(*WORKS, "deadletter.move_and_list"),
        area=AREA,
    )
    async def test_poison_dead_lettered(self, env: BrokerEnv) -> None:
        """MUST dead-letter an undecodable message with a reason and keep working."""
        app = await open_app(env)

        @app.task(name="conformance.after_poison")
        async def after() -> str:
            return "alive"

        broker = await app.connected_broker()
        await broker.publish(app.default_queue, b"\x00 not a chicory envelope", {})
        async with running(start_worker(app)):
            value = await result_within(
                await after.delay(), timeout=10, what="a task after the poison message"
            )
            assert value == "alive", f"the task after the poison message returned {value!r}"
        dead = await broker.dead_letters(app.default_queue)
        listed = [(d.body, bool(d.reason)) for d in dead]
        assert listed == [(b"\x00 not a chicory envelope", True)], (
            f"expected the undecodable body dead-lettered with a reason; listed {listed}"
        )
