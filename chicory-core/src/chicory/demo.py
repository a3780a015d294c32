"""``chicory demo``: tasks of both delivery modes flowing through a real worker.

It enqueues a mix of tasks on the given broker (``memory://`` by default, in this process),
runs a worker on them, shows progress from an observer plugin (the same hooks any metrics
plugin uses) as a ``rich`` progress bar on standard error (a final count line when that is
not a terminal or ``rich`` is not installed), and ends with a summary on standard output:
what succeeded, what was retried, what was dead-lettered and why. The worker's per-task log
lines (its retries and failures are the demo's point) and its start-up lines are held back
while it runs.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.lowlevel

from chicory.app import Chicory
from chicory.cli.output import Out, rich_available, stderr_console
from chicory.context import TaskContext
from chicory.errors import TaskFailedError
from chicory.history import split_reason
from chicory.modes import DeliveryMode
from chicory.plugins import TaskEvent, hookimpl
from chicory.retry import RetryPolicy
from chicory.worker import Worker

__all__ = ["DEMO_QUEUE", "build_demo_app", "run_demo"]

DEMO_QUEUE = "chicory-demo"
"""The demo's own queue, so a demo run on a shared broker touches nothing else."""


class _Tally:
    """An observer plugin that counts lifecycle events."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @hookimpl
    def chicory_task_succeeded(self, event: TaskEvent) -> None:
        self.counts["succeeded"] += 1

    @hookimpl
    def chicory_task_retried(self, event: TaskEvent) -> None:
        self.counts["retried"] += 1

    @hookimpl
    def chicory_task_failed(self, event: TaskEvent) -> None:
        self.counts["failed"] += 1


class PaymentDeclined(Exception):
    """The demo's simulated transient failure."""


def build_demo_app(broker: str, tally: object | None = None) -> Chicory:
    """Build the demo's app and its five tasks on ``broker``."""
    app = Chicory(broker=broker, plugins=[tally] if tally else (), default_queue=DEMO_QUEUE)
    quick_retry = RetryPolicy(max_retries=3, backoff="exponential", delay=0.02, max_delay=0.2)

    @app.task(name="demo.log_event", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def log_event(event: str) -> None:
        await anyio.sleep(0.001)

    @app.task(name="demo.resize_image", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    def resize_image(image_id: int, width: int) -> dict[str, int]:
        time.sleep(0.002)  # sync tasks run in the worker's thread pool
        return {"image_id": image_id, "width": width, "height": width * 3 // 4}

    @app.task(
        name="demo.charge", delivery_mode=DeliveryMode.AT_LEAST_ONCE, retry_policy=quick_retry
    )
    async def charge(ctx: TaskContext, order: int, amount: float) -> str:
        if order % 4 == 0 and ctx.attempt < 3:
            raise PaymentDeclined(f"gateway busy for order {order} (attempt {ctx.attempt})")
        return f"charged {amount:.2f} for order {order}"

    @app.task(
        name="demo.sync_inventory",
        delivery_mode=DeliveryMode.AT_LEAST_ONCE,
        retry_policy=quick_retry,
    )
    async def sync_inventory(sku: str) -> None:
        raise ConnectionError(f"warehouse API unreachable for {sku}")

    @app.task(name="demo.validate_address", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def validate_address(ctx: TaskContext, address: str) -> str:
        if not address.strip():
            ctx.fail("empty address: nothing to validate")
        return address.title()

    return app


@contextmanager
def _quiet_worker() -> Iterator[None]:
    """Hold back the worker's per-task lines and its INFO lines for the block."""
    quieted = {"chicory.task": logging.CRITICAL, "chicory.worker": logging.WARNING}
    saved = {name: logging.getLogger(name).level for name in quieted}
    for name, level in quieted.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


async def run_demo(total: int = 300, broker: str = "memory://") -> int:
    """Run the demo; return 0 when every task ended as expected."""
    with _quiet_worker():
        return await _run_demo(total, broker)


async def _run_demo(total: int, broker: str) -> int:
    tally = _Tally()
    app = build_demo_app(broker, tally)
    tasks = app.tasks
    per_kind = max(1, total // 5)
    worker = Worker(app, concurrency=20, heartbeat_interval=1.0)
    purged = await (await app.connected_broker()).purge_dead_letters(DEMO_QUEUE)
    if purged:
        print(f"(removed {purged} dead letters left by an earlier demo run)")
    started = time.perf_counter()
    handles: dict[str, list[Any]] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        handles["demo.log_event"] = await tasks["demo.log_event"].delay_many(
            (f"page-view-{i}",) for i in range(per_kind)
        )
        handles["demo.resize_image"] = await tasks["demo.resize_image"].delay_many(
            (i, 640) for i in range(per_kind)
        )
        handles["demo.charge"] = await tasks["demo.charge"].delay_many(
            (i, 9.5 + i) for i in range(per_kind)
        )
        handles["demo.sync_inventory"] = await tasks["demo.sync_inventory"].delay_many(
            (f"SKU-{i}",) for i in range(max(1, per_kind // 10))
        )
        handles["demo.validate_address"] = await tasks["demo.validate_address"].delay_many(
            (" " if i % 10 == 0 else f"{i} main street",) for i in range(per_kind)
        )
        expected = sum(len(v) for v in handles.values())
        print(
            f"Chicory demo: {expected} tasks enqueued on {app.broker_description}; "
            "a worker with concurrency 20 runs them\n"
        )
        outcomes: Counter[tuple[str, str]] = Counter()
        with _progress(tally, expected) as show:
            async with anyio.create_task_group() as waiters:
                for name, results in handles.items():
                    for result in results:
                        waiters.start_soon(_collect, name, result, outcomes)
                while sum(outcomes.values()) < expected:
                    show(sum(outcomes.values()))
                    await anyio.sleep(0.05)
            show(sum(outcomes.values()))
        elapsed = time.perf_counter() - started
        dead = await app.broker.dead_letters(DEMO_QUEUE, limit=1000)
        worker.stop()
    await app.close()
    print()
    _summary(
        outcomes,
        tally,
        [(app.codec.decode(d.body, d.headers).task, d) for d in dead],
        elapsed,
        expected,
    )
    return 0


async def _collect(name: str, result: Any, outcomes: Counter[tuple[str, str]]) -> None:
    if name == "demo.log_event":
        await anyio.lowlevel.checkpoint()  # at-most-once fire-and-forget: nothing to wait for
        outcomes[(name, "sent")] += 1
        return
    try:
        await result.get(timeout=60)
        outcomes[(name, "succeeded")] += 1
    except TaskFailedError:
        outcomes[(name, "failed")] += 1


def _counts(tally: _Tally) -> str:
    counts = tally.counts
    return (
        f"succeeded {counts['succeeded']} | retried {counts['retried']} | failed {counts['failed']}"
    )


@contextmanager
def _progress(tally: _Tally, expected: int) -> Iterator[Callable[[int], None]]:
    """Yield ``show(done)``: a rich progress bar on a terminal, else one line at the end.

    The bar and the log lines share one console, so a log line printed while the bar runs
    goes above it instead of running into it.
    """
    if not (sys.stderr.isatty() and rich_available()):
        last = [0]

        def remember(done: int) -> None:
            last[0] = done

        yield remember
        print(f"finished {last[0]}/{expected} | {_counts(tally)}", file=sys.stderr, flush=True)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("finished"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        console=stderr_console(),
    ) as bar:
        task = bar.add_task("demo", total=expected, counts=_counts(tally))

        def show(done: int) -> None:
            bar.update(task, completed=done, counts=_counts(tally))

        yield show


def _summary(
    outcomes: Counter[tuple[str, str]],
    tally: _Tally,
    dead: list[tuple[str, Any]],
    elapsed: float,
    expected: int,
) -> None:
    Out().table(
        ("TASK", "OUTCOME", "COUNT"),
        [[name, outcome, count] for (name, outcome), count in sorted(outcomes.items())],
    )
    print(
        f"\nretries: {tally.counts['retried']}   dead letters: {len(dead)}   "
        f"time: {elapsed:.2f} s   ({expected / elapsed:,.0f} tasks/s with retries and delays)"
    )
    examples: dict[str, str] = {}
    per_task: Counter[str] = Counter()
    for task_name, letter in dead:
        per_task[task_name] += 1
        examples.setdefault(task_name, split_reason(letter.reason)[0])
    for task_name, count in sorted(per_task.items()):
        print(f"  {count} dead letter(s) from {task_name}, e.g. {examples[task_name]!r}")
    print(
        "\nAt-most-once tasks were acked before running; at-least-once tasks after their "
        "result was stored.\nSee docs/delivery-modes.md for what each mode guarantees."
    )
