"""What a worker heartbeat costs, and so what a 2 s heartbeat interval costs a worker.

``chicory workers`` and the dashboard show counts from heartbeats, so their freshness is the
heartbeat interval (2 s by default). A heartbeat is one record written by the worker's own
loop, never on a task's path; this measures the worker process's CPU per heartbeat (building
the record, encoding it, the backend call) on memory:// and on Redis, and what that is as a
share of one core at 10 s and at 2 s.

Usage (Redis at 127.0.0.1:6379 unless ``--port``; keys under a private prefix, removed)::

    .venv/bin/python benchmarks/heartbeat.py [--port 6390] [--beats 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
import uuid

from chicory.backend import ResultBackend
from chicory.clock import utcnow
from chicory.records import WorkerInfo, encode_record
from chicory_memory.results import MemoryResultBackend
from chicory_redis.results import RedisResultBackend


async def per_beat(backend: ResultBackend, beats: int) -> float:
    """Seconds of this process's CPU per heartbeat (median of three runs of ``beats``)."""
    started = utcnow()
    runs = []
    async with backend:
        for _ in range(3):
            cpu = time.process_time()
            for n in range(beats):
                info = WorkerInfo(
                    worker_id="bench-worker",
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    queues=["default", "billing"],
                    concurrency=64,
                    started_at=started,
                    seen_at=utcnow(),
                    processed=n,
                    running=3,
                    failed=1,
                    retried=2,
                    heartbeat_interval=2.0,
                )
                await backend.heartbeat("bench-worker", encode_record(info), ttl=6.0)
            runs.append((time.process_time() - cpu) / beats)
    return sorted(runs)[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--beats", type=int, default=2000)
    args = parser.parse_args()
    prefix = f"chicory-bench-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:{args.port}/13?key_prefix={prefix}"
    print(f"{'backend':<10}{'CPU per heartbeat':>20}{'share at 10 s':>16}{'share at 2 s':>16}")
    for name, backend in (
        ("memory", MemoryResultBackend()),
        ("redis", RedisResultBackend.from_url(url)),
    ):
        cost = await per_beat(backend, args.beats)
        print(f"{name:<10}{cost * 1e6:>17.1f} us{cost / 10:>15.5%}{cost / 2:>15.5%}")
    cleanup = RedisResultBackend.from_url(url)
    async with cleanup:
        await cleanup.client.delete(*[k async for k in cleanup.client.scan_iter(f"{prefix}*")])


if __name__ == "__main__":
    asyncio.run(main())
