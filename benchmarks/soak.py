"""Worker memory over a long run: RSS after 10,000 tasks vs after ``soak_tasks`` tasks.

Runs on Redis with a separate ``chicory worker`` process (at-least-once no-op tasks), so the
RSS is that of a real worker process (psutil). Tasks go in chunks of 10,000 with at most two
chunks outstanding, so neither Redis nor the worker ever holds the whole run.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from chicory_app import build_app
from common import VENV_BIN, Measurement, RssSampler, Settings, child_process
from driver import redis_done_waiter

__all__ = ["CHUNK", "run_soak"]

CHUNK = 10_000


async def run_soak(settings: Settings, log: Path) -> Measurement:
    """Run ``settings.soak_tasks`` no-op tasks through one worker process; RSS in MiB."""
    prefix = f"cs{uuid.uuid4().hex[:8]}"
    url = settings.chicory_url(prefix)
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    argv = [
        str(VENV_BIN / "chicory"),
        "--log-level",
        "WARNING",
        "worker",
        "chicory_app:app",
        "--concurrency",
        str(settings.concurrency),
        "--prefetch",
        str(settings.worker_prefetch),
    ]
    app = build_app(url, lambda run, at: None)
    task = app.tasks["bench.noop_alo"]

    async def enqueue_chunk() -> str:
        run = uuid.uuid4().hex
        for offset in range(0, CHUNK, settings.batch):
            await task.delay_many([(run, CHUNK)] * min(settings.batch, CHUNK - offset))
        return run

    chunks = max(2, settings.soak_tasks // CHUNK)
    try:
        with child_process(argv, env=env, log=log) as proc, RssSampler(proc.pid, 0.1) as rss:
            wait_done = redis_done_waiter(settings.redis_url, alive=lambda: proc.poll() is None)
            start = time.perf_counter()
            await wait_done(await enqueue_chunk(), 120)
            after_first = rss.current()
            pending = await enqueue_chunk()
            for _ in range(chunks - 2):
                following = await enqueue_chunk()
                await wait_done(pending, 120)
                pending = following
            await wait_done(pending, 120)
            elapsed = time.perf_counter() - start
            after_all = rss.current()
            if proc.poll() is not None:
                raise RuntimeError(f"the Chicory worker exited early; see {log}")
            peak = rss.peak
    finally:
        await app.close()
    return Measurement(
        {
            "tasks": float(chunks * CHUNK),
            "rss_first_mib": after_first / 2**20,
            "rss_end_mib": after_all / 2**20,
            "peak_mib": peak / 2**20,
            "growth": after_all / after_first - 1,
            "rate": chunks * CHUNK / elapsed,
        }
    )
