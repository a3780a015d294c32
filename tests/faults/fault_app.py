"""The app the fault harness's worker processes run (``chicory worker fault_app:app``).

The broker comes from ``CHICORY_BROKER_URL``. Each task appends ``s <n> <time>`` when it
starts and ``e <n> <time>`` when it ends to the file named by ``CHICORY_FAULT_RUNS``; one
``os.write`` of a short line to a file opened with ``O_APPEND`` is atomic, so processes
sharing the file (and processes killed with SIGKILL) never tear or interleave lines.
"""

from __future__ import annotations

import os
import time

import anyio

from chicory import Chicory, DeliveryMode, RetryPolicy

app = Chicory(retry_policy=RetryPolicy(max_retries=0))

_RUNS = os.open(
    os.environ.get("CHICORY_FAULT_RUNS", os.devnull), os.O_WRONLY | os.O_APPEND | os.O_CREAT
)


def record(event: str, n: int) -> None:
    """Append one event line for task number ``n``."""
    os.write(_RUNS, f"{event} {n} {time.time():.4f}\n".encode())


@app.task(name="f.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
async def alo(n: int, ms: int) -> int:
    """At least once: runs ``ms`` milliseconds."""
    record("s", n)
    await anyio.sleep(ms / 1000)
    record("e", n)
    return n


@app.task(name="f.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
async def amo(n: int, ms: int) -> int:
    """At most once: runs ``ms`` milliseconds."""
    record("s", n)
    await anyio.sleep(ms / 1000)
    record("e", n)
    return n
