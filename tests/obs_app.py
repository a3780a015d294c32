"""The app of the observability tests, in worker processes (``chicory worker obs_app:app``,
broker from ``CHICORY_BROKER_URL``) and in-process (:func:`build`).

Tasks: one that succeeds, one that fails once and then succeeds, one that always fails and
is dead-lettered, and one that sleeps.
"""

from __future__ import annotations

from typing import Any

import anyio

from chicory import Chicory, RetryPolicy, TaskContext


def build(broker: str | None = None, **options: Any) -> Chicory:
    """The app, on ``broker`` (default: ``CHICORY_BROKER_URL``, else memory://)."""
    chicory = Chicory(
        broker=broker,
        retry_policy=RetryPolicy(max_retries=1, delay=0),
        default_queue="obs",
        **options,
    )

    @chicory.task(name="obs.ok")
    async def ok(n: int) -> int:
        return n

    @chicory.task(name="obs.flaky")
    async def flaky(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("smtp server went away")
        return ctx.attempt

    @chicory.task(name="obs.nap")
    async def nap(seconds: float) -> float:
        await anyio.sleep(seconds)
        return seconds

    @chicory.task(name="obs.doomed")
    async def doomed() -> None:
        raise ValueError("this address does not exist")

    return chicory


app = build()
