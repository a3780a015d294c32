"""The scheduled app the dashboard's schedule tests share (HTTP and browser).

A cron schedule in Paris whose task reports progress twice, held after each report until the
test opens a gate, and a five-minute interval.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import anyio

from chicory import Chicory, TaskContext


class Gates:
    """Where a test holds the running report: ``halfway`` and ``done``, set from the test."""

    def __init__(self) -> None:
        self.halfway = threading.Event()
        self.done = threading.Event()

    @staticmethod
    async def wait(gate: threading.Event) -> None:
        """Wait (polling: the gate is set from the test's thread) until ``gate`` is set."""
        with anyio.fail_after(60):
            while not gate.is_set():  # noqa: ASYNC110 (set from the test's thread)
                await anyio.sleep(0.02)


def scheduled_app(gates: Gates, url: str = "memory://") -> Chicory:
    """The app: schedules ``nightly`` (cron ``30 2 * * *`` in Paris, task ``reports.build``,
    reporting 25% and then 150 of 200) and ``tick`` (every five minutes, ``ops.tick``)."""
    app = Chicory(url, backend=url)

    @app.periodic(cron="30 2 * * *", tz="Europe/Paris", args=("daily",), name="nightly")
    @app.task(name="reports.build")
    async def build(ctx: TaskContext, kind: str) -> str:
        await ctx.set_progress(0.25, {"step": "collect"})
        await gates.wait(gates.halfway)
        await ctx.set_progress(150, {"rows": 150, "total": 200})
        await gates.wait(gates.done)
        return f"{kind} built"

    @app.periodic(every=timedelta(minutes=5), name="tick")
    @app.task(name="ops.tick")
    async def tick() -> int:
        return 1

    return app
