"""End to end through the real core worker: what a worker's crash does to each delivery mode.

A crash is ``Worker.kill()`` (nothing settled, nothing handed back), plus a severed
connection on brokers with session-bound leases, as a dead process would leave.
``AT_MOST_ONCE`` acked before the task ran, so the task is lost and never runs twice;
``AT_LEAST_ONCE`` acks after, so the task runs again once its lease is gone.

Mixed into :class:`~chicory.testing.WorkerSuite`.
"""

from __future__ import annotations

from typing import cast

import anyio

from chicory.app import Chicory
from chicory.context import TaskContext
from chicory.modes import DeliveryMode
from chicory.retry import RetryPolicy
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import expect_counts
from chicory.testing.worker_rig import RigBroker, open_app, running, start_worker
from chicory.worker import Worker

__all__ = ["CrashedWorkers"]

AREA = "WorkerSuite"
MUST = Level.MUST
AMO, ALO = DeliveryMode.AT_MOST_ONCE, DeliveryMode.AT_LEAST_ONCE
NO_RETRY = RetryPolicy.never()
RESULTS = ("result_backend",)
HELD = ("lease_renewal|lease_model=session",)
WORKS = ("broker.round_trip", "settle.ack_removes")


async def die(env: BrokerEnv, app: Chicory, worker: Worker) -> None:
    """Kill ``worker`` as SIGKILL would; on a session broker its connections drop too."""
    worker.kill()
    if env.capabilities.lease_model == "session":
        rig = cast(RigBroker, app.broker)
        for consumer in rig.consumers:
            await env.sever(consumer)


class CrashedWorkers:
    """Guarantees of :class:`~chicory.testing.WorkerSuite` about workers dying mid-task."""

    @guarantee(
        "worker.at_most_once_crash",
        MUST,
        env=BROKER_ENV,
        needs=(*RESULTS, "sever_if_session"),
        rests_on=WORKS,
        area=AREA,
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
            await die(env, app, doomed)
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
        area=AREA,
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
            await die(env, app, doomed)
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
