"""chicory-opentelemetry against the real OpenTelemetry SDK: one trace from a producer
process to a worker process, through the message's headers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from chicory import Chicory, RetryPolicy, TaskContext, Worker
from chicory_opentelemetry import OpenTelemetryMiddleware

TESTS = Path(__file__).resolve().parents[2] / "tests"


def tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_one_trace_spans_the_producer_and_the_worker_process(tmp_path: Path) -> None:
    prefix = f"chicory-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    env = {**os.environ, "CHICORY_BROKER_URL": url, "PYTHONPATH": str(TESTS)}
    env.pop("CHICORY_BACKEND_URL", None)
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-m", "chicory.cli", "worker", "otel_app:app", "-q", "otel"]
    with log.open("wb") as out:
        worker = subprocess.Popen(argv, cwd=TESTS, env=env, stdout=out, stderr=subprocess.STDOUT)
    provider, exporter = tracing()
    producer = Chicory(
        broker=url,
        middleware=[OpenTelemetryMiddleware(tracer_provider=provider)],
        default_queue="otel",
    )

    @producer.task(name="otel.work")
    async def work(ctx: TaskContext, n: int) -> int:
        raise AssertionError("runs in the worker")

    @producer.task(name="otel.spans")
    async def spans() -> dict[str, Any]:
        raise AssertionError("runs in the worker")

    async def main() -> dict[str, Any]:
        try:
            with provider.get_tracer("test").start_as_current_span("POST /signup"):
                result = await work.delay(41)
            assert await result.get(timeout=30) == 42
            return await (await spans.delay()).get(timeout=30)
        finally:
            await producer.close()

    try:
        remote = anyio.run(main)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        client = redis.Redis()
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()

    assert remote["pid"] != os.getpid()
    local = {
        (span.attributes or {}).get("chicory.task.name", span.name): span
        for span in exporter.get_finished_spans()
    }
    request, created = local["POST /signup"], local["otel.work"]
    assert created.name == "create otel"
    assert created.kind is SpanKind.PRODUCER
    assert created.parent is not None
    assert created.parent.span_id == request.context.span_id
    assert created.attributes is not None
    assert dict(created.attributes) == {
        "messaging.system": "chicory",
        "messaging.operation.type": "create",
        "messaging.operation.name": "create",
        "messaging.destination.name": "otel",
        "messaging.message.id": dict(created.attributes)["messaging.message.id"],
        "chicory.task.name": "otel.work",
    }
    processed = [s for s in remote["spans"] if s["name"] == "process otel"]
    assert len(processed) == 2  # the failed first attempt and the retry
    for attempt, span in enumerate(processed, start=1):
        assert span["kind"] == "CONSUMER"
        assert span["trace_id"] == f"{request.context.trace_id:032x}"  # one trace, 2 processes
        assert span["parent_id"] == f"{created.context.span_id:016x}"
        assert span["links"] == [f"{created.context.span_id:016x}"]
        attributes = span["attributes"]
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.destination.name"] == "otel"
        assert attributes["messaging.message.id"] == created.attributes["messaging.message.id"]
        assert (attributes["chicory.task.name"], attributes["chicory.task.attempt"]) == (
            "otel.work",
            attempt,
        )
    first, second = processed
    assert (first["status"], first["events"]) == ("ERROR", ["exception"])
    assert first["attributes"]["chicory.task.outcome"] == "retried"
    assert second["status"] == "UNSET"


async def test_a_task_that_publishes_continues_the_trace() -> None:
    provider, exporter = tracing()
    app = Chicory(
        broker="memory://",
        backend="memory://",
        middleware=[OpenTelemetryMiddleware(tracer_provider=provider)],
        retry_policy=RetryPolicy.never(),
    )

    @app.task(name="t.child")
    async def child() -> None:
        return None

    @app.task(name="t.parent")
    async def parent() -> None:
        await child.delay()

    worker = Worker(app, heartbeat_interval=0, fetch_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        await parent.delay()
        with anyio.fail_after(10):
            while worker.processed < 2:  # noqa: ASYNC110 - a counter, not an event
                await anyio.sleep(0.01)
        worker.stop()
    await app.close()
    spans = exporter.get_finished_spans()
    assert len({span.context.trace_id for span in spans}) == 1
    assert [s.name for s in spans].count("process default") == 2
