"""End to end through the real core worker: what each delivery mode promises."""

from __future__ import annotations

import anyio
import pytest

from chicory.clock import utcnow
from chicory.context import TaskContext
from chicory.errors import TaskFailedError
from chicory.modes import DeliveryMode
from chicory.retry import RetryPolicy
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.worker_rig import open_app, running, start_worker

__all__ = ["WorkerSuite"]

MUST = Level.MUST
AMO, ALO = DeliveryMode.AT_MOST_ONCE, DeliveryMode.AT_LEAST_ONCE
NO_RETRY = RetryPolicy.never()


class WorkerSuite:
    """Subclass with an empty body (``class TestWorker(WorkerSuite): pass``)."""

    @guarantee("worker.round_trip", MUST, env=BROKER_ENV)
    async def test_round_trip(self, env: BrokerEnv) -> None:
        """MUST run an enqueued task once per delivery mode and return its result."""
        app = await open_app(env)
        runs: list[str] = []
        for mode in (AMO, ALO):

            @app.task(name=f"conformance.echo.{mode.value}", delivery_mode=mode)
            async def echo(value: str) -> str:
                runs.append(value)
                return value.upper()

            async with running(start_worker(app)):
                result = await echo.delay(mode.value)
                assert await result.get(timeout=10) == mode.value.upper()
        assert sorted(runs) == sorted(m.value for m in (AMO, ALO))

    @guarantee("worker.at_most_once_crash", MUST, env=BROKER_ENV)
    async def test_at_most_once_crash(self, env: BrokerEnv) -> None:
        """MUST lose, never rerun, an AT_MOST_ONCE task whose worker dies mid-task."""
        app = await open_app(env, lease_seconds=1.0)
        runs: list[int] = []
        started = anyio.Event()

        @app.task(name="conformance.amo_crash", delivery_mode=AMO, retry_policy=NO_RETRY)
        async def crash() -> None:
            runs.append(1)
            started.set()
            await anyio.sleep_forever()

        result = await crash.delay()
        doomed = start_worker(app)
        async with running(doomed):
            await started.wait()
            doomed.kill()
        async with running(start_worker(app)):
            await anyio.sleep(2.5)  # well past the 1 s lease of the dead worker's delivery
        assert len(runs) == 1, f"an AT_MOST_ONCE task ran {len(runs)} times"
        counts = await app.broker.counts(app.default_queue)
        assert (counts.ready, counts.in_flight) == (0, 0), f"the task was not acked first: {counts}"
        assert not await result.ready()

    @guarantee("worker.at_least_once_crash", MUST, env=BROKER_ENV, requires=("lease_renewal",))
    async def test_at_least_once_crash(self, env: BrokerEnv) -> None:
        """MUST rerun, never lose, an AT_LEAST_ONCE task whose worker dies mid-task."""
        app = await open_app(env, lease_seconds=1.0)
        runs: list[int] = []
        started = anyio.Event()

        @app.task(name="conformance.alo_crash", delivery_mode=ALO, retry_policy=NO_RETRY)
        async def crash(ctx: TaskContext) -> int:
            runs.append(ctx.delivery_count)
            if len(runs) == 1:
                started.set()
                await anyio.sleep_forever()
            return ctx.delivery_count

        result = await crash.delay()
        doomed = start_worker(app)
        async with running(doomed):
            await started.wait()
            doomed.kill()
        async with running(start_worker(app)):
            try:
                value = await result.get(timeout=env.harness.patience)
            except TimeoutError:
                raise AssertionError(
                    f"the task was lost: not run again within {env.harness.patience} s after "
                    "its worker died (1 s lease)"
                ) from None
        assert value == 2, f"the rerun saw delivery_count {value}, not 2"
        assert runs == [1, 2]

    @guarantee("worker.lease_kept_alive", MUST, env=BROKER_ENV, requires=("lease_renewal",))
    async def test_lease_kept_alive(self, env: BrokerEnv) -> None:
        """MUST never redeliver an AT_LEAST_ONCE task while its worker is alive and running it."""
        app = await open_app(env, lease_seconds=1.5)
        runs: list[int] = []

        @app.task(name="conformance.long", delivery_mode=ALO, retry_policy=NO_RETRY)
        async def long() -> str:
            runs.append(1)
            await anyio.sleep(3.0)  # twice the lease
            return "done"

        result = await long.delay()
        async with running(start_worker(app)), running(start_worker(app)):
            assert await result.get(timeout=15) == "done"
        assert len(runs) == 1, f"a live worker's task was redelivered ({len(runs)} runs)"

    @guarantee("worker.retries", MUST, env=BROKER_ENV)
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
                assert await (await flaky.delay()).get(timeout=10) == 3, mode
        counts = await app.broker.counts(app.default_queue)
        assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 0), counts

    @guarantee("worker.retry_delay", MUST, env=BROKER_ENV, requires=("delayed_delivery",))
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
            await (await backoff.delay()).get(timeout=15)
        gap = starts[1] - starts[0]
        assert gap >= 1.0 - env.harness.clock_tolerance, f"retried after {gap:.3f} s, not 1 s"

    @guarantee("worker.dead_letter_exhausted", MUST, env=BROKER_ENV, requires=("dead_letter",))
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
                assert failure.value.exc_message == "boom", failure.value
        names = [f"conformance.doomed.{m.value}" for m in (AMO, ALO)]
        assert sorted(runs) == sorted(names * 2), f"expected 2 attempts per mode: {runs}"
        dead = await app.broker.dead_letters(app.default_queue)
        assert len(dead) == 2, dead
        assert all("boom" in d.reason for d in dead), dead
        counts = await app.broker.counts(app.default_queue)
        assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 2), counts

    @guarantee("worker.poison_dead_lettered", MUST, env=BROKER_ENV, requires=("dead_letter",))
    async def test_poison_dead_lettered(self, env: BrokerEnv) -> None:
        """MUST dead-letter an undecodable message with a reason and keep working."""
        app = await open_app(env)

        @app.task(name="conformance.after_poison")
        async def after() -> str:
            return "alive"

        broker = await app.connected_broker()
        await broker.publish(app.default_queue, b"\x00 not a chicory envelope", {})
        async with running(start_worker(app)):
            assert await (await after.delay()).get(timeout=10) == "alive"
        (dead,) = await broker.dead_letters(app.default_queue)
        assert dead.body == b"\x00 not a chicory envelope"
        assert dead.reason, "a dead letter without a reason"

    @guarantee("worker.drain_finishes_running", MUST, env=BROKER_ENV)
    async def test_drain_finishes_running(self, env: BrokerEnv) -> None:
        """MUST let running tasks finish (and store their results) during a graceful drain."""
        app = await open_app(env)
        started = anyio.Event()

        @app.task(name="conformance.finishing", delivery_mode=ALO)
        async def finishing() -> str:
            started.set()
            await anyio.sleep(0.5)
            return "finished"

        result = await finishing.delay()
        worker = start_worker(app, drain_timeout=10.0)
        async with running(worker):
            await started.wait()
            worker.stop()
        assert await result.get(timeout=1) == "finished"

    @guarantee("worker.drain_hands_back", MUST, env=BROKER_ENV)
    async def test_drain_hands_back(self, env: BrokerEnv) -> None:
        """MUST hand unfinished AT_LEAST_ONCE work back at once when a drain times out."""
        app = await open_app(env)  # 30 s lease: only a hand-back makes the work ready in time
        release = anyio.Event()
        started = anyio.Event()

        @app.task(name="conformance.stuck", delivery_mode=ALO, retry_policy=NO_RETRY)
        async def stuck(n: int) -> int:
            started.set()
            await release.wait()
            return n

        results = [await stuck.delay(n) for n in range(3)]
        worker = start_worker(app, concurrency=1, prefetch=2, drain_timeout=0.3)
        async with running(worker):
            await started.wait()
            await anyio.sleep(0.2)  # let the fetch loop take the other two
            worker.stop()
        counts = await app.broker.counts(app.default_queue)
        assert (counts.ready, counts.in_flight) == (3, 0), f"not handed back at once: {counts}"
        release.set()
        async with running(start_worker(app)):
            assert [await r.get(timeout=10) for r in results] == [0, 1, 2]
