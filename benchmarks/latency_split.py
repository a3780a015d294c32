"""Where one round trip's time goes at 200 tasks/s: timestamps in both processes.

Usage (from the repository root, Redis on 127.0.0.1:6379; database 13 is flushed)::

    .venv/bin/python benchmarks/latency_split.py [--tasks N] [--rate R]

An open-loop producer (this process) sends one ``add`` every ``1 / rate`` seconds and awaits
each result, as the latency benchmark does, while a ``chicory worker`` process runs them.
Both processes stamp named moments with ``time.monotonic()`` (``CLOCK_MONOTONIC``, one clock
for every process on the machine) by wrapping a few functions at start-up; the worker
writes its stamps to a file when it exits. Tasks are far enough apart that every stamp
between the start of one call and the start of the next belongs to that task. Printed: the
median of each step over the tasks, in path order.

The wrappers add a few microseconds to the steps they bound; the split is for seeing
which step is long, not for the total (the latency benchmark measures that).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

STEPS = (
    ("call", "p_publish", "producer: delay() called -> message built and encoded"),
    ("p_publish", "p_command", "producer: -> redis-py command entered"),
    ("p_command", "p_connection", "producer: -> pooled connection checked out"),
    ("p_connection", "p_send", "producer: -> XADD written to the socket"),
    ("p_send", "p_reply", "producer: -> XADD reply read"),
    ("p_reply", "p_returned", "producer: -> delay() returned"),
    ("p_send", "w_fetched", "XADD written -> the worker admits the XREADGROUP reply"),
    ("w_fetched", "w_handle", "worker: -> a runner starts the delivery"),
    ("w_handle", "w_store", "worker: -> result write handed to the backend"),
    ("w_store", "w_send", "worker: -> result script written to the socket"),
    ("w_send", "p_notified", "result script written -> the producer's listener reads it"),
    ("p_notified", "p_result", "producer: -> get() returned"),
    ("call", "p_result", "the whole round trip"),
)
"""``(from, to, label)``: the steps printed, in path order."""

Marks = list[tuple[str, float]]


def _wrap(
    owner: Any, attr: str, before: str | None, marks: Marks, after: str | None = None
) -> None:
    """Stamp ``before`` when ``owner.attr`` (a coroutine function) is called, and ``after``
    when the call returns (each if given)."""
    original: Callable[..., Awaitable[Any]] = getattr(owner, attr)
    clock = time.monotonic

    async def stamped(*args: Any, **kwargs: Any) -> Any:
        if before is not None:
            marks.append((before, clock()))
        result = await original(*args, **kwargs)
        if after is not None:
            marks.append((after, clock()))
        return result

    setattr(owner, attr, stamped)


def _worker(out: str, argv: list[str]) -> int:
    """Run ``chicory worker`` with stamps; write them to ``out`` at exit."""
    import redis.asyncio.connection as connection

    import chicory.worker.job as job
    import chicory_redis.consumer as consumer
    import chicory_redis.results as results
    from chicory.cli import main

    marks: Marks = []
    _wrap(consumer.RedisConsumer, "_accept", "w_fetched", marks)
    _wrap(job.JobRunner, "handle", "w_handle", marks)
    _wrap(results.RedisResultBackend, "store_many", "w_store", marks)
    _wrap(connection.AbstractConnection, "send_packed_command", "w_send", marks)

    def dump() -> None:
        Path(out).write_text("".join(f"{name} {at!r}\n" for name, at in marks))

    atexit.register(dump)
    return main(argv)


async def _producer(settings: Any, tasks: int, rate: float) -> list[dict[str, float]]:
    import redis.asyncio.client as client
    import redis.asyncio.connection as connection
    from chicory_app import build_app
    from common import VENV_BIN, child_process

    import chicory.app
    import chicory_redis.waiters as waiters

    marks: Marks = []
    _wrap(chicory.app.Chicory, "publish_one", "p_publish", marks)
    _wrap(client.Redis, "execute_command", "p_command", marks)
    _wrap(connection.BlockingConnectionPool, "get_connection", None, marks, "p_connection")
    _wrap(connection.AbstractConnection, "send_packed_command", "p_send", marks)
    _wrap(connection.AbstractConnection, "read_response", None, marks, "p_reply")
    on_message = waiters.ResultWaiters._on_message

    def notified(self: waiters.ResultWaiters, payload: bytes) -> None:
        marks.append(("p_notified", time.monotonic()))
        on_message(self, payload)

    waiters.ResultWaiters._on_message = notified  # type: ignore[method-assign]

    url = settings.chicory_url("latency-split")
    stamps = Path(tempfile.mkdtemp()) / "worker-stamps.txt"
    argv = [str(VENV_BIN / "python"), __file__, "--worker-stamps", str(stamps), "--"]
    argv += ["--log-level", "WARNING", "worker", "chicory_app:app", "--concurrency", "64"]
    app = build_app(url, lambda run, at: None)
    add = app.tasks["bench.add"]
    try:
        with child_process(argv, env={"BENCH_CHICORY_URL": url}):
            for _ in range(50):  # warm up, and wait for the worker
                await (await add.delay(1, 1)).get(timeout=30)
            marks.clear()
            start = time.monotonic()
            for i in range(tasks):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                marks.append(("call", time.monotonic()))
                result = await add.delay(i, 1)
                marks.append(("p_returned", time.monotonic()))
                await result.get(timeout=30)
                marks.append(("p_result", time.monotonic()))
    finally:
        await app.close()
    for line in stamps.read_text().splitlines():
        name, at = line.split()
        marks.append((name, float(at)))
    marks.sort(key=lambda mark: mark[1])
    per_task: list[dict[str, float]] = []
    for name, at in marks:
        if name == "call":
            per_task.append({})
        if per_task and name not in per_task[-1]:
            per_task[-1][name] = at
    return per_task


def main() -> int:
    """Measure and print the split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--worker-stamps", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker_stamps:
        return _worker(args.worker_stamps, [a for a in rest if a != "--"])
    import redis
    from common import Settings

    settings = Settings()
    plain = redis.Redis(host=settings.host, port=settings.port, db=settings.db)
    plain.flushdb()
    try:
        per_task = asyncio.run(_producer(settings, args.tasks, args.rate))
    finally:
        plain.flushdb()
        plain.close()
    print(f"{len(per_task)} tasks at {args.rate:.0f}/s; per step, ms: median [p90]")
    for first, then, label in STEPS:
        deltas = sorted(t[then] - t[first] for t in per_task if first in t and then in t)
        if not deltas:
            print(f"  {'-':>7}          {label} (never stamped)")
            continue
        p50 = statistics.median(deltas) * 1e3
        p90 = deltas[int(0.9 * (len(deltas) - 1))] * 1e3
        print(f"  {p50:7.3f} [{p90:6.3f}]  {label}")
    return 0


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
