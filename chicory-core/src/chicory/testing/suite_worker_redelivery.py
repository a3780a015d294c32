"""Fewer duplicates under at-least-once: a redelivered task that finished is not run again.

A worker that stored an at-least-once task's result and died before acking leaves the
delivery to be redelivered. The next worker reads the task's record first (only for a
delivery counted more than once, see :mod:`chicory.worker.followups`) and acks it unrun.
That rests on the broker counting a redelivery: a broker that reports every delivery as the
first makes the worker run the task again.

Mixed into :class:`~chicory.testing.WorkerSuite`.
"""

from __future__ import annotations

import anyio

from chicory.clock import utcnow
from chicory.modes import DeliveryMode
from chicory.records import ResultRecord, TaskState, encode_record
from chicory.retry import RetryPolicy
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import fetch_exactly
from chicory.testing.worker_rig import open_app, running, start_worker

__all__ = ["RedeliveredWork"]

AREA = "WorkerSuite"


class RedeliveredWork:
    """Guarantees of :class:`~chicory.testing.WorkerSuite` about redelivered work."""

    @guarantee(
        "worker.redelivered_done_acked",
        Level.MUST,
        env=BROKER_ENV,
        needs=("result_backend",),
        rests_on=("broker.round_trip", "settle.ack_removes", "settle.nack_requeue"),
        area=AREA,
    )
    async def test_redelivered_done_acked(self, env: BrokerEnv) -> None:
        """MUST ack, without running it again, a redelivered AT_LEAST_ONCE task whose
        successful result was stored before its worker died (and never acked it)."""
        app = await open_app(env)
        runs: list[str] = []

        @app.task(
            name="conformance.done_once",
            delivery_mode=DeliveryMode.AT_LEAST_ONCE,
            retry_policy=RetryPolicy.never(),
        )
        async def once(value: str) -> str:
            runs.append(value)
            return value.upper()

        result = await once.delay("fresh")
        # What a worker that died between its result write and its ack leaves behind: the
        # result stored, and the delivery unsettled, so the broker delivers it again.
        backend = await app.connected_backend()
        async with app.broker.consume([app.default_queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            stored = ResultRecord(
                task_id=result.id,
                task=once.name,
                state=TaskState.SUCCESS,
                attempt=1,
                updated_at=utcnow(),
                result="STORED",
            )
            await backend.store(result.id, encode_record(stored), final=True, ttl=60)
            await delivery.nack(requeue=True)
        async with running(start_worker(app)):
            with anyio.fail_after(env.harness.patience):
                while True:
                    counts = await app.broker.counts(app.default_queue)
                    if counts.ready == 0 and counts.in_flight == 0:
                        break
                    await anyio.sleep(0.05)
        assert runs == [], (
            f"a redelivered task whose result was stored already ran again ({len(runs)} "
            "run(s)); the worker reads the record of a delivery counted more than once, so "
            "does the broker count redeliveries (delivery_count > 1)?"
        )
        assert await result.get(timeout=5) == "STORED", "the stored result was replaced"
