"""End to end through the real core worker: what each delivery mode promises.

``AT_MOST_ONCE`` acks before the task runs (a crash may lose it, nothing runs twice);
``AT_LEAST_ONCE`` acks after it ran and its result was stored (nothing is lost, a crash may
run it twice). Workers renew leases as in production: every third of the lease the broker
declares.

:class:`WorkerSuite` is one public suite in four modules: this one (a round trip, leases kept
alive while a task runs, graceful drains), :mod:`chicory.testing.suite_worker_crashes`
(workers dying mid-task), :mod:`chicory.testing.suite_worker_failures` (tasks that raise,
retries, dead letters) and :mod:`chicory.testing.suite_worker_redelivery` (redelivered work
that already finished).
"""

from __future__ import annotations

import anyio

from chicory.modes import DeliveryMode
from chicory.retry import RetryPolicy
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import expect_counts
from chicory.testing.suite_worker_crashes import CrashedWorkers
from chicory.testing.suite_worker_failures import FailingTasks
from chicory.testing.suite_worker_redelivery import RedeliveredWork
from chicory.testing.worker_rig import open_app, running, start_worker
from chicory.testing.worker_rig import result_within as _result
from chicory.worker import Worker

__all__ = ["WorkerSuite"]

MUST = Level.MUST
AMO, ALO = DeliveryMode.AT_MOST_ONCE, DeliveryMode.AT_LEAST_ONCE
NO_RETRY = RetryPolicy.never()
RESULTS = ("result_backend",)
HELD = ("lease_renewal|lease_model=session",)
WORKS = ("broker.round_trip", "settle.ack_removes")


def _stop_now(workers: tuple[Worker, ...]) -> None:
    for worker in workers:
        worker.stop(now=True)


class WorkerSuite(CrashedWorkers, FailingTasks, RedeliveredWork):
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
