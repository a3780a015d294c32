"""chicory-prometheus against the real prometheus_client: a known workload, scraped over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from chicory import Chicory, RetryPolicy, TaskContext, TaskFailedError, Worker
from chicory.clock import utcnow
from chicory.envelope import TaskMessage
from chicory.errors import ConfigurationError
from chicory_prometheus import PrometheusMiddleware

TESTS = Path(__file__).resolve().parents[2] / "tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def build(middleware: PrometheusMiddleware) -> Chicory:
    app = Chicory(
        broker="memory://",
        backend="memory://",
        middleware=[middleware],
        retry_policy=RetryPolicy(max_retries=1, delay=0),
        default_queue="obs",
    )

    @app.task(name="obs.ok")
    async def ok(n: int) -> int:
        return n

    @app.task(name="obs.flaky")
    async def flaky(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise ConnectionError("try again")
        return ctx.attempt

    @app.task(name="obs.doomed")
    async def doomed() -> None:
        raise ValueError("never")

    return app


@asynccontextmanager
async def serving(app: Chicory) -> AsyncIterator[Worker]:
    worker = Worker(app, queues=["obs"], heartbeat_interval=0, fetch_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        try:
            yield worker
        finally:
            worker.stop()


async def worker_done(worker: Worker, count: int) -> None:
    while worker.processed < count:  # noqa: ASYNC110 - a counter, not an event
        await anyio.sleep(0.01)


async def test_a_known_workload_scraped_over_http() -> None:
    port = free_port()
    middleware = PrometheusMiddleware(port=port, addr="127.0.0.1", registry=CollectorRegistry())
    app = build(middleware)
    async with serving(app) as worker:
        for n in range(3):
            assert await (await app.tasks["obs.ok"].delay(n)).get(timeout=10) == n
        assert await (await app.tasks["obs.flaky"].delay()).get(timeout=10) == 2
        with pytest.raises(TaskFailedError):
            await (await app.tasks["obs.doomed"].delay()).get(timeout=10)
        # A poison message (a task this worker does not know) is dead-lettered too.
        poison = TaskMessage(id="poison", task="obs.unknown", queue="obs", created_at=utcnow())
        body, headers = app.codec.encode(poison)
        await app.broker.publish("obs", body, headers)
        with anyio.fail_after(10):
            await worker_done(worker, 8)
        samples: dict[Any, float] = {}
        with anyio.fail_after(10):  # the dead-letter counts come from the observer thread
            while value(samples, "chicory_dead_letters_total", task="", queue="obs") < 1:
                samples = await anyio.to_thread.run_sync(scrape, port)
                await anyio.sleep(0.02)
    await app.close()

    def tasks(task: str, outcome: str) -> float:
        return value(samples, "chicory_tasks_total", task=task, queue="obs", outcome=outcome)

    assert tasks("obs.ok", "succeeded") == 3
    assert (tasks("obs.flaky", "retried"), tasks("obs.flaky", "succeeded")) == (1, 1)
    assert (tasks("obs.doomed", "retried"), tasks("obs.doomed", "failed")) == (1, 1)
    assert tasks("obs.ok", "failed") == 0
    ok = {"task": "obs.ok", "queue": "obs"}
    assert value(samples, "chicory_task_duration_seconds_count", **ok) == 3
    assert value(samples, "chicory_task_queue_wait_seconds_count", **ok) == 3
    flaky = {"task": "obs.flaky", "queue": "obs"}
    assert value(samples, "chicory_task_queue_wait_seconds_count", **flaky) == 1  # first attempts
    assert value(samples, "chicory_tasks_in_progress", **ok) == 0
    assert value(samples, "chicory_dead_letters_total", task="obs.doomed", queue="obs") == 1
    assert value(samples, "chicory_dead_letters_total", task="", queue="obs") == 1
    depth = {
        s: value(samples, "chicory_queue_messages", queue="obs", state=s)
        for s in ("ready", "delayed", "in_flight", "dead")
    }
    assert depth == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 2}


async def test_a_taken_port_is_a_clear_error_without_multiprocess_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        middleware = PrometheusMiddleware(port=port, addr="127.0.0.1", registry=CollectorRegistry())
        app = build(middleware)
        with pytest.raises(ConfigurationError, match=f"port {port} is taken"):
            await Worker(app, heartbeat_interval=0).serve()
        await app.close()


def test_from_env_reads_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHICORY_PROMETHEUS_PORT", "9876")
    assert PrometheusMiddleware.from_env().port == 9876
    monkeypatch.setenv("CHICORY_PROMETHEUS_PORT", "")
    assert PrometheusMiddleware.from_env().port is None
    monkeypatch.setenv("CHICORY_PROMETHEUS_PORT", "http")
    with pytest.raises(ConfigurationError, match="not a port number"):
        PrometheusMiddleware.from_env()


def test_worker_processes_share_one_endpoint_in_multiprocess_mode(tmp_path: Path) -> None:
    """Two ``chicory worker --middleware prometheus`` processes on one Redis and one
    PROMETHEUS_MULTIPROC_DIR: one serves, the scrape sums both."""
    prefix = f"chicory-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    port = free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {
        **os.environ,
        "CHICORY_BROKER_URL": url,
        "PYTHONPATH": str(TESTS),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "CHICORY_PROMETHEUS_PORT": str(port),
        "CHICORY_PROMETHEUS_ADDR": "127.0.0.1",
    }
    env.pop("CHICORY_BACKEND_URL", None)
    argv = [sys.executable, "-m", "chicory.cli", "worker", "obs_app:app", "-q", "obs"]
    argv += ["--middleware", "prometheus", "--concurrency", "2"]
    workers = [
        subprocess.Popen(
            argv,
            cwd=TESTS,
            env=env,
            stdout=(tmp_path / f"w{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    sys.path.insert(0, str(TESTS))
    try:
        from obs_app import build as build_obs

        deadline = time.monotonic() + 30
        while not all("consuming" in (tmp_path / f"w{i}.log").read_text() for i in range(2)):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        producer = build_obs(url)

        async def produce() -> list[Any]:
            try:
                results = await producer.tasks["obs.nap"].delay_many([(0.05,)] * 40)
                return [await r.get(timeout=30) for r in results]
            finally:
                await producer.close()

        assert anyio.run(produce) == [0.05] * 40
        deadline = time.monotonic() + 20
        while True:
            try:
                samples = scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        total = value(
            samples, "chicory_tasks_total", task="obs.nap", queue="obs", outcome="succeeded"
        )
        assert total == 40
        written = {p.name.rsplit("_", 1)[-1] for p in multiproc.glob("counter_*.db")}
        assert len(written) == 2, "both workers count into the shared directory"
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) == 0
    finally:
        sys.path.remove(str(TESTS))
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
        import redis

        client = redis.Redis()
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
