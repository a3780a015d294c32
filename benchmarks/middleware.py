"""What middleware costs per task: the memory:// drain with each observability plugin on.

Usage (from the repository root; touches nothing outside its own processes)::

    .venv/bin/python benchmarks/middleware.py                 # 4 rounds of 60,000 tasks
    .venv/bin/python benchmarks/middleware.py --rounds 6 --tasks 100000

Each measurement is the ``memory`` scenario of ``benchmarks/compare.py`` (producer and
worker in one fresh process, ``delay_many`` in batches of 1,000, at-least-once no-op tasks,
concurrency 64, prefetch 192, ``tune_gc()``), with one variant of the app:

* ``none``: no middleware (the plain path: the baseline);
* ``noop``: one middleware whose ``execute`` only awaits ``call_next`` (the chain's own cost);
* ``prometheus``: ``PrometheusMiddleware(port=None)`` on a registry of its own;
* ``opentelemetry``: ``OpenTelemetryMiddleware`` on an SDK tracer provider with a batch span
  processor whose exporter discards (a producer and a consumer span per task);
* ``sentry``: ``SentryMiddleware`` with ``sentry_sdk.init`` on a transport that discards
  (no task fails, so this is the cost of its scope per run);
* ``debug-logs``: no middleware, the ``chicory.task`` logger at DEBUG into a handler that
  writes to ``/dev/null`` (two lines per task: received, succeeded).

Rounds run every variant once, in order, so slow drift of the machine hits all alike; the
table gives each variant's median rate and CPU per task, and the CPU it adds per task: the
median over the rounds of its CPU per task less that round's ``none`` (producer and worker
together, since both run in the process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from common import BENCH_DIR, PYTHON

VARIANTS = ("none", "noop", "prometheus", "opentelemetry", "sentry", "debug-logs")


def _middleware(variant: str) -> list[Any]:
    if variant == "noop":
        from chicory.middleware import CallNext, Middleware

        class Noop(Middleware):
            async def execute(self, ctx: Any, call_next: CallNext) -> Any:
                return await call_next(ctx)

        return [Noop()]
    if variant == "prometheus":
        from prometheus_client import CollectorRegistry

        from chicory_prometheus import PrometheusMiddleware

        return [PrometheusMiddleware(port=None, registry=CollectorRegistry())]
    if variant == "opentelemetry":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from chicory_opentelemetry import OpenTelemetryMiddleware

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        return [OpenTelemetryMiddleware(tracer_provider=provider)]
    if variant == "sentry":
        import sentry_sdk
        from sentry_sdk.transport import Transport

        from chicory_sentry import SentryMiddleware

        class Discard(Transport):  # type: ignore[no-redef]
            def capture_envelope(self, envelope: Any) -> None:
                pass

        sentry_sdk.init(dsn="https://public@sentry.invalid/1", transport=Discard())
        return [SentryMiddleware()]
    if variant == "debug-logs":
        logger = logging.getLogger("chicory.task")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115
        logger.propagate = False
    return []


async def _measure(variant: str, tasks: int) -> dict[str, float]:
    from chicory_app import build_app

    from chicory.worker import Worker, tune_gc

    tune_gc()
    logging.getLogger("chicory.worker").setLevel(logging.ERROR)
    done: dict[str, asyncio.Event] = {"warm-up": asyncio.Event(), "run": asyncio.Event()}
    app = build_app("memory://", lambda run, at: done[run].set())
    for middleware in _middleware(variant):
        app.add_middleware(middleware)
    task = app.tasks["bench.noop_alo"]
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


def _child(variant: str, tasks: int) -> dict[str, float]:
    argv = [PYTHON, __file__, "--child", variant, "--tasks", str(tasks)]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(BENCH_DIR))
    done = subprocess.run(
        argv, cwd=BENCH_DIR, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=60_000)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.child, args.tasks))))
        return
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for round_ in range(1, args.rounds + 1):
        for variant in args.variants:
            values = _child(variant, args.tasks)
            results[variant].append(values)
            print(
                f"round {round_} {variant}: {values['rate']:,.0f} tasks/s, "
                f"{values['cpu_us']:.2f} us CPU per task",
                flush=True,
            )
    base = results.get("none")
    print("\n| variant | tasks/s | CPU per task, us | added per task, us |")
    print("|---|---|---|---|")
    for variant, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        cpu = statistics.median(r["cpu_us"] for r in runs)
        # The CPU a variant adds in each round over that round's baseline, then the median.
        added = (
            statistics.median(r["cpu_us"] - b["cpu_us"] for r, b in zip(runs, base, strict=True))
            if base
            else float("nan")
        )
        print(f"| {variant} | {rate:,.0f} | {cpu:.2f} | {added:+.2f} |")


if __name__ == "__main__":
    sys.exit(main())
