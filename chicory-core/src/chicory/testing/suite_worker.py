"""End to end through the real core worker: what each delivery mode promises.

``AT_MOST_ONCE`` acks before the task runs (a crash may lose it, nothing runs twice);
``AT_LEAST_ONCE`` acks after it ran and its result was stored (nothing is lost, a crash may
run it twice). Crashes are ``Worker.kill()`` (nothing settled, nothing handed back), plus a
severed connection on brokers with session-bound leases, as a dead process would leave.
Workers renew leases as in production: every third of the lease the broker declares.
"""

from __future__ import annotations

from typing import TypeVar, cast

import anyio
import pytest

from chicory.app import Chicory
from chicory.clock import utcnow
from chicory.context import TaskContext
from chicory.errors import TaskFailedError
from chicory.modes import DeliveryMode
from chicory.result import AsyncResult
from chicory.retry import RetryPolicy
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import expect_counts
from chicory.testing.suite_worker_redelivery import RedeliveredWork
from chicory.testing.worker_rig import RigBroker, open_app, running, start_worker
from chicory.worker import Worker

__all__ = ["WorkerSuite"]

MUST = Level.MUST
AMO, ALO = DeliveryMode.AT_MOST_ONCE, DeliveryMode.AT_LEAST_ONCE
NO_RETRY = RetryPolicy.never()
RESULTS = ("result_backend",)
HELD = ("lease_renewal|lease_model=session",)
_T = TypeVar("_T")
WORKS = ("broker.round_trip", "settle.ack_removes")


async def _die(env: BrokerEnv, app: Chicory, worker: Worker) -> None:
    """Kill ``worker`` as SIGKILL would; on a session broker its connections drop too."""
    worker.kill()
    if env.capabilities.lease_model == "session":
        rig = cast(RigBroker, app.broker)
        for consumer in rig.consumers:
            await env.sever(consumer)


async def _result(result: AsyncResult[_T], *, timeout: float, what: str) -> _T:
    """Wait for ``result``; a task that never finishes fails the test in words."""
    try:
        return await result.get(timeout=timeout)
    except TimeoutError:
        raise AssertionError(
            f"expected {what} to finish within {timeout:g} s; it did not (was it delivered, "
            "and was its result stored?)"
        ) from None


def _stop_now(workers: tuple[Worker, ...]) -> None:
    for worker in workers:
        worker.stop(now=True)


class WorkerSuite(RedeliveredWork):
    """Subclass with an empty body (``class TestWorker(WorkerSuite): pass``)."""

    @guarantee("worker.round_trip", MUST, env=BROKER_ENV, needs=RESULTS, rests_on=WORKS)
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
                value = await _result(result, timeout=10, what=f"the {mode.value} task")
                assert value == mode.value.upper(), (
                    f"a {mode.value} task returning {mode.value.upper()!r} gave {value!r}"
                )
        assert sorted(runs) == sorted(m.value for m in (AMO, ALO)), (
            f"expected one run per delivery mode; the tasks ran {runs}"
        )

    @guarantee(
        "worker.at_most_once_crash",
        MUST,
        env=BROKER_ENV,
        needs=(*RESULTS, "sever_if_session"),
        rests_on=WORKS,
    )
    async def test_at_most_once_crash(self, env: BrokerEnv) -> None:
        """MUST lose, never rerun, an AT_MOST_ONCE task whose worker dies mid-task."""
        app = await open_app(env, lease_seconds=env.harness.short_lease, rig=True)
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
            await _die(env, app, doomed)
        async with running(start_worker(app)):
            await anyio.sleep(2.5 * env.harness.short_lease)  # well past the dead one's lease
        assert len(runs) == 1, (
            f"an AT_MOST_ONCE task whose worker died ran {len(runs)} times: its pre-run ack "
            "did not remove it"
        )
        await expect_counts(
            app.broker,
            app.default_queue,
            what="after the at-most-once task's worker died (it was acked first)",
            ready=0,
            in_flight=0,
        )
        assert not await result.ready(), "a task whose worker died mid-run has a result"

    @guarantee(
        "worker.at_least_once_crash",
        MUST,
        env=BROKER_ENV,
        requires=HELD,
        needs=(*RESULTS, "sever_if_session"),
        rests_on=(*WORKS, "delivery.redeliver_on_lease_expiry", "session.redeliver_on_disconnect"),
    )
    async def test_at_least_once_crash(self, env: BrokerEnv) -> None:
        """MUST rerun, never lose, an AT_LEAST_ONCE task whose worker dies mid-task."""
        app = await open_app(env, lease_seconds=env.harness.short_lease, rig=True)
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
            await _die(env, app, doomed)
        async with running(start_worker(app)):
            try:
                value = await result.get(timeout=env.harness.patience)
            except TimeoutError:
                raise AssertionError(
                    f"expected the task to run again after its worker died; it was not run "
                    f"within {env.harness.patience:g} s (lease {env.harness.short_lease:g} s)"
                ) from None
        assert value == 2, f"the rerun saw delivery_count {value}, not 2"
        assert runs == [1, 2], f"expected a first run and one rerun; deliveries seen: {runs}"

    @guarantee(
        "worker.lease_kept_alive",
        MUST,
        env=BROKER_ENV,
        requires=HELD,
        needs=RESULTS,
        rests_on=(*WORKS, "lease.declared", "lease.duration", "session.held_while_connected"),
    )
    async def test_lease_kept_alive(self, env: BrokerEnv) -> None:
        """MUST never redeliver an AT_LEAST_ONCE task while its worker is alive and running
        it for 2.5 times the declared lease, renewing it as workers do."""
        app = await open_app(env, lease_seconds=env.harness.short_lease)
        lease = app.broker.capabilities.lease_seconds or env.harness.short_lease
        runs: list[int] = []

        @app.task(name="conformance.long", delivery_mode=ALO, retry_policy=NO_RETRY)
        async def long() -> str:
            runs.append(1)
            await anyio.sleep(2.5 * lease)
            return "done"

        result = await long.delay()
        workers = start_worker(app), start_worker(app)
        async with running(workers[0]), running(workers[1]):
            limit = 5 * lease + env.harness.patience
            value = await _result(result, timeout=limit, what="a task running 2.5 leases")
            assert value == "done", f"the long task returned {value!r}"
            _stop_now(workers)  # a second run, if any, need not finish
        declared = app.broker.capabilities.lease_seconds
        assert len(runs) == 1, (
            f"a task running {2.5 * lease:g} s on a live worker started {len(runs)} times: its "
            f"lease (built with lease_seconds={env.harness.short_lease:g}, declared "
            f"lease_seconds={declared!r}, renewed every "
            f"{declared / 3 if declared else 10:g} s) ran out while it ran"
        )

    @guarantee(
        "worker.slow_renewal",
        MUST,
        env=BROKER_ENV,
        requires=("lease_renewal",),
        needs=RESULTS,
        rests_on=(*WORKS, "lease.declared", "lease.late_renewal"),
    )
    async def test_slow_renewal(self, env: BrokerEnv) -> None:
        """MUST keep running work whose lease renewals reach the broker late but within the
        lease (each one slowed by 40% of the lease), and run it once."""
        lease = env.harness.short_lease * 1.5
        app = await open_app(env, lease_seconds=lease, rig=True, renew_delay=0.4 * lease)
        lease = app.broker.capabilities.lease_seconds or lease
        runs: list[int] = []

        @app.task(name="conformance.slow_renewal", delivery_mode=ALO, retry_policy=NO_RETRY)
        async def long() -> str:
            runs.append(1)
            await anyio.sleep(2.2 * lease)
            return "done"

        result = await long.delay()
        workers = start_worker(app), start_worker(app)
        async with running(workers[0]), running(workers[1]):
            limit = 5 * lease + env.harness.patience
            value = await _result(result, timeout=limit, what="a task with slow renewals")
            assert value == "done", f"the long task returned {value!r}"
            _stop_now(workers)
        assert len(runs) == 1, (
            f"a task whose lease renewals each arrived {0.4 * lease:g} s late (within the "
            f"{lease:g} s lease) started {len(runs)} times"
        )

    @guarantee(
        "worker.retries", MUST, env=BROKER_ENV, needs=RESULTS, rests_on=(*WORKS, "settle.retry")
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
                attempt = await _result(
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
            await _result(await backoff.delay(), timeout=15, what="a task retried after 1 s")
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
            value = await _result(
                await after.delay(), timeout=10, what="a task after the poison message"
            )
            assert value == "alive", f"the task after the poison message returned {value!r}"
        dead = await broker.dead_letters(app.default_queue)
        listed = [(d.body, bool(d.reason)) for d in dead]
        assert listed == [(b"\x00 not a chicory envelope", True)], (
            f"expected the undecodable body dead-lettered with a reason; listed {listed}"
        )

    @guarantee("worker.drain_finishes_running", MUST, env=BROKER_ENV, needs=RESULTS, rests_on=WORKS)
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
        value = await _result(result, timeout=1, what="a task running during the drain")
        assert value == "finished", f"a task finishing during a drain returned {value!r}"

    @guarantee(
        "worker.drain_hands_back",
        MUST,
        env=BROKER_ENV,
        needs=RESULTS,
        rests_on=(*WORKS, "settle.nack_requeue", "delivery.redeliver_on_close"),
    )
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
        await expect_counts(
            app.broker,
            app.default_queue,
            what="right after a drain timed out (running and prefetched work handed back)",
            ready=3,
            in_flight=0,
        )
        release.set()
        async with running(start_worker(app)):
            values = [await _result(r, timeout=10, what="a handed-back task") for r in results]
            assert values == [0, 1, 2], f"the handed-back tasks returned {values}"
