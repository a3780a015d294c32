"""Is a change faster? This checkout against an earlier revision, in interleaved runs.

Usage (from the repository root, with the ``bench`` dependency group installed, as
``benchmarks/run`` does: ``uv sync --frozen --group bench``; the ``filled`` and ``drain``
scenarios need Redis on 127.0.0.1:6379, or on the port ``$BENCH_REDIS_PORT`` names, and
flush database 13 only; ``--instructions`` needs valgrind)::

    .venv/bin/python benchmarks/compare.py BASE                        # memory:// drain, 4 pairs
    .venv/bin/python benchmarks/compare.py BASE --scenario memory_amo  # the same, at most once
    .venv/bin/python benchmarks/compare.py BASE --scenario filled      # a worker on a full stream
    .venv/bin/python benchmarks/compare.py BASE --scenario drain       # benchmarks/run's drain
    .venv/bin/python benchmarks/compare.py BASE --instructions         # callgrind, memory://
    .venv/bin/python benchmarks/compare.py BASE --scenario concurrent --port 6390

``BASE`` is any git revision (``HEAD~3``, a commit id). It is checked out into a temporary
worktree (removed at the end) and put first on ``PYTHONPATH``, so the base's packages
replace this checkout's in every process of its runs, producer and worker alike; the
benchmark code itself is this checkout's.

Scenarios, one fresh process (and worker) per measurement:

* ``memory``: producer and worker in one process on ``memory://``; after a warm-up,
  ``--tasks`` no-op at-least-once tasks enqueued with ``delay_many`` (batches of 1,000);
  tasks/s end to end and the process's CPU per task.
* ``memory_amo``: the same with at-most-once tasks.
* ``filled``: ``--tasks`` no-op tasks (after 500 warm-up ones) enqueued on Redis first, then
  a ``chicory worker`` process (concurrency 64, prefetch 192) started on them; tasks/s from
  the end of the warm-up to the last task, and the worker's CPU per task over that span.
* ``concurrent``: ``benchmarks/single_calls.py``: 2,000 concurrent single ``delay()`` +
  ``get()`` calls against a fresh worker process (``--tasks`` sets how many), then 300 lone
  round trips; calls/s, the producer's CPU per call and the lone round trip's p50.
* ``drain``: the at-least-once drain of ``benchmarks/run`` (``chicory_bench.redis_drain_rep``:
  a fresh worker process, concurrency 64, prefetch 192, while this process enqueues
  ``--tasks`` with ``delay_many`` in batches of 1,000); tasks/s end to end, the worker's CPU
  per task, and the producer's and ``redis-server``'s CPU per task.

Runs alternate base, this, base, this ... so slow drift of the machine hits both alike; each
pair's numbers are printed, then the medians. ``--instructions`` counts instructions per task
of the ``memory`` or ``memory_amo`` scenario with ``valgrind --tool=callgrind`` instead (the
difference between a run of ``--tasks`` and one of 2,000, so start-up cancels out):
repeatable to ~0.3%, whatever else the machine does.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BENCH_DIR, PYTHON, VENV_BIN, Settings, child_process, stop_process

ROOT = BENCH_DIR.parent
SHORT_RUN = 2_000  # the short run of --instructions


# -- the measurements, each in a child process ----------------------------------------------


async def _memory(tasks: int, name: str = "bench.noop_alo") -> dict[str, float]:
    from chicory_app import build_app

    from chicory.worker import Worker

    logging.getLogger("chicory.worker").setLevel(logging.ERROR)  # memory:// is process-local
    done: dict[str, asyncio.Event] = {"warm-up": asyncio.Event(), "run": asyncio.Event()}
    app = build_app("memory://", lambda run, at: done[run].set())
    task = app.tasks[name]
    worker = Worker(app, concurrency=64, prefetch=192, heartbeat_interval=0)
    async with asyncio.TaskGroup() as group:
        group.create_task(worker.serve())
        await worker.wait_started()
        await task.delay_many([("warm-up", 500)] * 500)
        await done["warm-up"].wait()
        cpu, start = time.process_time(), time.perf_counter()
        for offset in range(0, tasks, 1_000):
            await task.delay_many([("run", tasks)] * min(1_000, tasks - offset))
        await done["run"].wait()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        worker.stop()
    await app.close()
    return {"rate": tasks / elapsed, "cpu_us": cpu / tasks * 1e6}


async def _filled(tasks: int) -> dict[str, float]:
    import psutil  # type: ignore[import-untyped]
    import redis
    from chicory_app import build_app
    from driver import redis_done_waiter

    settings = Settings()
    redis.Redis(host=settings.host, port=settings.port, db=settings.db).flushdb()
    url = settings.chicory_url("compare")
    app = build_app(url, lambda run, at: None)
    task = app.tasks["bench.noop_alo"]
    await task.delay_many([("warm-up", 500)] * 500)
    for offset in range(0, tasks, 1_000):
        await task.delay_many([("run", tasks)] * min(1_000, tasks - offset))
    await app.close()
    argv = [str(VENV_BIN / "chicory"), "--log-level", "WARNING", "worker", "chicory_app:app"]
    argv += ["--concurrency", "64", "--prefetch", "192"]
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    try:
        with child_process(argv, env=env) as proc:
            wait_done = redis_done_waiter(settings.redis_url, alive=lambda: proc.poll() is None)
            started = await wait_done("warm-up", 120)
            before = psutil.Process(proc.pid).cpu_times()
            finished = await wait_done("run", 600)
            after = psutil.Process(proc.pid).cpu_times()
    finally:
        redis.Redis(host=settings.host, port=settings.port, db=settings.db).flushdb()
    cpu = after.user + after.system - before.user - before.system
    return {"rate": tasks / (finished - started), "cpu_us": cpu / tasks * 1e6}


async def _drain(tasks: int) -> dict[str, float]:
    import redis
    from chicory_bench import redis_drain_rep

    settings = dataclasses.replace(Settings(), drain_tasks=tasks)
    redis.Redis(host=settings.host, port=settings.port, db=settings.db).flushdb()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            measured = await redis_drain_rep(settings, 64, 192, Path(scratch) / "worker.log")
    finally:
        redis.Redis(host=settings.host, port=settings.port, db=settings.db).flushdb()
    values = measured.values
    return {"rate": values["e2e"], **{k: v for k, v in values.items() if k.endswith("cpu_us")}}


async def _memory_amo(tasks: int) -> dict[str, float]:
    return await _memory(tasks, "bench.noop_amo")


async def _concurrent(tasks: int) -> dict[str, float]:
    from single_calls import run_once

    values = await run_once(Settings(), tasks, 300)
    return {
        "rate": values["rate"],
        "cpu_us": values["cpu_us"],
        "lone_p50": values["lone_p50_us"],
        "lone_p99": values["lone_p99_us"],
    }


SCENARIOS = {
    "memory": _memory,
    "memory_amo": _memory_amo,
    "filled": _filled,
    "drain": _drain,
    "concurrent": _concurrent,
}


def _child(scenario: str, tasks: int) -> None:
    measure = SCENARIOS[scenario]
    print(json.dumps(asyncio.run(measure(tasks))))


# -- the parent -------------------------------------------------------------------------------


def _run(argv: list[str], pythonpath: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a measurement in its own session; stop it (and what it started) by pid."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, str(BENCH_DIR)) if p)
    proc = subprocess.Popen(
        argv,
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed:\n{err[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _measure(scenario: str, tasks: int, pythonpath: str) -> dict[str, float]:
    argv = [PYTHON, __file__, "--child", scenario, "--tasks", str(tasks)]
    return dict(json.loads(_run(argv, pythonpath, timeout=900).stdout.splitlines()[-1]))


def _instructions(scenario: str, tasks: int, pythonpath: str) -> float:
    """Instructions per task of a memory:// scenario (long run minus short run)."""
    counts = []
    for n in (SHORT_RUN, tasks):
        with tempfile.TemporaryDirectory() as scratch:
            argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch}/out"]
            argv += [PYTHON, __file__, "--child", scenario, "--tasks", str(n)]
            err = _run(argv, pythonpath, timeout=1800).stderr
        found = re.search(r"Collected : (\d+)", err)
        if found is None:
            raise RuntimeError(f"callgrind printed no total:\n{err[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / (tasks - SHORT_RUN)


def _describe(values: dict[str, float]) -> str:
    text = f"{values['rate']:,.0f} tasks/s, {values['cpu_us']:.1f} us CPU per task"
    if "lone_p50" in values:
        text += (
            f"; lone round trip p50 {values['lone_p50']:.0f} us, p99 {values['lone_p99']:.0f} us"
        )
    others = [
        f"{key.removesuffix('_cpu_us')} {value:.1f}"
        for key, value in values.items()
        if key.endswith("_cpu_us")
    ]
    return text + (f" (and per task, us: {', '.join(others)})" if others else "")


def _worktree(revision: str, into: Path) -> str:
    """Check ``revision`` out into ``into``; return the PYTHONPATH of its packages."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(into), revision],
        check=True,
    )
    # Every distribution of the base, plugins included: the app loads the installed plugins'
    # entry points, and a plugin of this checkout may not work with the base's core.
    sources = sorted(str(src) for src in into.glob("*/src")) + sorted(
        str(src) for src in into.glob("examples/*/src")
    )
    subprocess.run([PYTHON, "-m", "compileall", "-q", *sources], check=True)
    return os.pathsep.join(sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", help="the git revision to compare with")
    parser.add_argument("--scenario", choices=tuple(SCENARIOS), default="memory")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--port", type=int, help="Redis port (default: 6379)")
    parser.add_argument("--child", choices=tuple(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.port is not None:
        os.environ["BENCH_REDIS_PORT"] = str(args.port)  # read by Settings, here and in children
    if args.child:
        _child(args.child, args.tasks)
        return
    if args.instructions and not args.scenario.startswith("memory"):
        parser.error("--instructions counts a memory:// scenario: memory or memory_amo")
    if args.base is None:
        parser.error("name the revision to compare with, e.g. HEAD~1")
    tasks = args.tasks or (
        12_000
        if args.instructions
        else {"drain": 10_000, "concurrent": 2_000}.get(args.scenario, 60_000)
    )
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "base"
        base_path = _worktree(args.base, tree)
        try:
            sides = (("base", base_path), ("this", ""))
            if args.instructions:
                for label, path in sides:
                    per_task = _instructions(args.scenario, tasks, path)
                    print(f"{label}: {per_task:,.0f} instructions per task")
                return
            results: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
            for pair in range(1, args.pairs + 1):
                for label, path in sides:
                    values = _measure(args.scenario, tasks, path)
                    results[label].append(values)
                    print(f"pair {pair} {label}: {_describe(values)}", flush=True)
            for label, runs in results.items():
                medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                print(f"median {label}: {_describe(medians)}")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True
            )


if __name__ == "__main__":
    sys.exit(main())
