"""The app of the OpenTelemetry test's worker process (``chicory worker otel_app:app``).

Its spans go to the OpenTelemetry SDK's in-memory exporter; the ``otel.spans`` task returns
them (and the worker's pid), so the test, in another process, can put one trace together.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chicory import Chicory, RetryPolicy, TaskContext
from chicory_opentelemetry import OpenTelemetryMiddleware

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

app = Chicory(
    middleware=[OpenTelemetryMiddleware(tracer_provider=provider)],
    retry_policy=RetryPolicy(max_retries=1, delay=0),
    default_queue="otel",
)


@app.task(name="otel.work")
async def work(ctx: TaskContext, n: int) -> int:
    if ctx.attempt == 1:
        raise ConnectionError("first attempt fails")
    return n + 1


@app.task(name="otel.spans")
async def spans() -> dict[str, Any]:
    """The spans finished so far in this process, and its pid."""
    return {
        "pid": os.getpid(),
        "spans": [
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": f"{span.context.trace_id:032x}",
                "span_id": f"{span.context.span_id:016x}",
                "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                "links": [f"{link.context.span_id:016x}" for link in span.links],
                "attributes": dict(span.attributes or {}),
                "status": span.status.status_code.name,
                "events": [event.name for event in span.events],
            }
            for span in exporter.get_finished_spans()
        ],
    }
