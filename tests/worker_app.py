"""The app that subprocess workers in tests run (``chicory worker worker_app:app``).

The broker comes from ``CHICORY_BROKER_URL``. Tasks append a line per event to the file named
by ``CHICORY_TEST_RUNS`` (appends of short lines are atomic), so a test can count how often
each task started and finished across worker processes, even ones killed with SIGKILL.
"""

from __future__ import annotations

import gc
import os

import anyio

from chicory import Chicory, DeliveryMode, RetryPolicy

app = Chicory(retry_policy=RetryPolicy(max_retries=0))


def record(event: str) -> None:
    """Append one line to the runs file."""
    with open(os.environ.get("CHICORY_TEST_RUNS", os.devnull), "a") as runs:
        runs.write(event + "\n")


@app.task(name="w.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
async def alo(n: int, seconds: float) -> int:
    record(f"start {n}")
    await anyio.sleep(seconds)
    record(f"end {n}")
    return n


@app.task(name="w.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
async def amo(n: int, seconds: float) -> int:
    record(f"start {n}")
    await anyio.sleep(seconds)
    record(f"end {n}")
    return n


@app.task(name="w.gc")
async def gc_settings() -> list[int]:
    """The worker process's young-generation threshold and frozen object count."""
    return [gc.get_threshold()[0], gc.get_freeze_count()]


@app.task(name="w.pid")
async def pid(n: int, seconds: float) -> int:
    """The worker process's pid, after ``seconds``."""
    record(f"start {n}")
    await anyio.sleep(seconds)
    record(f"end {n}")
    return os.getpid()
