"""Plumbing for the end-to-end suite: an app on the broker under test, and running workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from chicory.app import Chicory
from chicory.backend import ResultBackend
from chicory.plugins import BackendKind, PluginHost
from chicory.testing.harness import BrokerEnv
from chicory.worker import Worker

__all__ = ["open_app", "running", "start_worker"]

RENEW = 0.25
"""Lease renewal interval of test workers; the crash tests use a 1 s lease."""


def _result_backend(env: BrokerEnv) -> ResultBackend:
    if env.harness.result_backend is not None:
        return env.harness.result_backend()
    for item in PluginHost().installed(BackendKind.RESULT_BACKEND):
        if item.spec.name == "memory":
            backend: ResultBackend = item.spec.load_factory()("memory://")
            return backend
    pytest.skip(
        "the end-to-end suite needs a result backend: set BrokerHarness.result_backend, or "
        "install chicory-memory for the default one"
    )


async def open_app(env: BrokerEnv, *, lease_seconds: float = 30.0) -> Chicory:
    """An app on a fresh broker under test, with a private default queue; closed at the end."""
    broker = await env.broker(lease_seconds=lease_seconds)
    app = Chicory(
        broker=broker,
        backend=_result_backend(env),
        load_entry_points=False,
        default_queue=env.queue("tasks"),
    )
    env.on_close(app.close)
    return app


def start_worker(app: Chicory, **options: Any) -> Worker:
    """A worker on the app's default queue with test-friendly timings."""
    settings: dict[str, Any] = {
        "concurrency": 2,
        "drain_timeout": 5.0,
        "lease_renew_interval": RENEW,
        "heartbeat_interval": 0,
        "fetch_timeout": 0.2,
        "settle_timeout": 5.0,
    }
    settings.update(options)
    return Worker(app, queues=[app.default_queue], **settings)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Serve ``worker`` in a task group; stop it (gracefully) when the block ends."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        with anyio.fail_after(10):
            await worker.wait_started()
        try:
            yield worker
        finally:
            if not worker.stopping:
                worker.stop()
