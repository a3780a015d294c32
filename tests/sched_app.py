"""The app the scheduling CLI tests run (``sched_app:app``): a nightly cron and a 1 s tick.

The broker comes from ``CHICORY_BROKER_URL`` (memory:// when unset).
"""

from __future__ import annotations

from datetime import timedelta

from chicory import Chicory

app = Chicory()


@app.periodic(cron="0 2 * * *", tz="Europe/Paris", args=("nightly",), name="nightly")
@app.periodic(every=timedelta(seconds=1), args=("tick",), name="tick")
@app.task(name="sched.echo")
async def echo(text: str) -> str:
    return text
