"""The app ``benchmarks/sqlite.py`` runs in its worker processes (``chicory worker
sqlite_app:app``, run from ``benchmarks/``).

The broker URL comes from ``CHICORY_BROKER_URL`` (results go to the same file). Each worker
process counts the no-op tasks it ran and remembers when the last one ended; at exit (after
SIGTERM's graceful drain) it writes ``<count> <last end>`` to the file named by
``BENCH_SQLITE_DONE`` plus its pid, so the harness learns when the drain ended without a
per-task measurement write.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

from chicory import Chicory, DeliveryMode

app = Chicory()
_ran = [0, 0.0]


def _report() -> None:
    target = os.environ.get("BENCH_SQLITE_DONE")
    if target:
        Path(f"{target}.{os.getpid()}").write_text(f"{_ran[0]} {_ran[1]!r}")


atexit.register(_report)


@app.task(name="bench.noop_alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE, ignore_result=True)
async def noop_alo() -> None:
    _ran[0] += 1
    _ran[1] = time.time()


@app.task(name="bench.noop_amo", delivery_mode=DeliveryMode.AT_MOST_ONCE, ignore_result=True)
async def noop_amo() -> None:
    _ran[0] += 1
    _ran[1] = time.time()


@app.task(name="bench.add")
async def add(x: int, y: int) -> int:
    return x + y
