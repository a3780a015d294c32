"""The app the scheduling CLI tests run (``sched_app:app``): a nightly cron and a 1 s tick.

The broker comes from ``CHICORY_BROKER_URL`` (memory:// when unset). When
``CHICORY_TEST_RUNS`` names a file, every run appends a line to it: its task id and the pid
of the process that ran it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from chicory import Chicory, TaskContext

app = Chicory()


@app.periodic(cron="0 2 * * *", tz="Europe/Paris", args=("nightly",), name="nightly")
@app.periodic(every=timedelta(seconds=1), args=("tick",), name="tick")
@app.task(name="sched.echo")
async def echo(ctx: TaskContext, text: str) -> str:
    runs = os.environ.get("CHICORY_TEST_RUNS")
    if runs:
        with open(runs, "a") as file:  # noqa: ASYNC230 - one short line, in a test app
            file.write(f"{ctx.task_id} {os.getpid()}\n")
    return text
