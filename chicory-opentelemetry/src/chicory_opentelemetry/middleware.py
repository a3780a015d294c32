"""The OpenTelemetry middleware: a producer span per published task, a consumer span per run.

Publishing a task (``before_publish``) records a ``PRODUCER`` span named ``create {queue}``
(OpenTelemetry's *create* operation: the message's creation context) and injects its context
into the message's headers with the configured propagator (W3C ``traceparent`` by default).
Running it (``execute``) extracts that context and records a ``CONSUMER`` span named
``process {queue}`` as its child, with a link to it as the messaging conventions advise: one
trace from the request that enqueued the task to every attempt of it, across processes.
Retries keep the headers, so each attempt is a child of the same producer span.

Attributes follow OpenTelemetry's messaging semantic conventions: ``messaging.system``
(``chicory``), ``messaging.operation.type`` and ``.name`` (``create``, ``process``),
``messaging.destination.name`` (the queue), ``messaging.message.id`` (the task id); and
Chicory's own ``chicory.task.name``, ``chicory.task.attempt``, ``chicory.delivery_count``
and, on a run that raised, ``chicory.task.outcome`` (``retried`` or ``failed``). A run
that raises records the exception on its span and sets the span's status to error.

Spans go to the tracer provider given, else the global one: with only ``opentelemetry-api``
installed and no SDK configured, they cost little and go nowhere.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanKind, StatusCode, TracerProvider

from chicory.context import TaskContext
from chicory.middleware import CallNext, Middleware, OutgoingTask

__all__ = ["OpenTelemetryMiddleware"]

SYSTEM: Final = "chicory"


class OpenTelemetryMiddleware(Middleware):
    """Traces publishing and running tasks, joined across processes through headers.

    Args:
        tracer_provider: Where spans go (default: the global tracer provider).
        propagator: How context travels in headers (default: the global propagator).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("chicory_opentelemetry", "0.1.0", tracer_provider)
        self._propagator = propagator

    def _inject(self, headers: dict[str, str], context: Any) -> None:
        if self._propagator is not None:
            self._propagator.inject(headers, context=context)
        else:
            propagate.inject(headers, context=context)

    def _extract(self, headers: Any) -> Any:
        if self._propagator is not None:
            return self._propagator.extract(headers)
        return propagate.extract(headers)

    def before_publish(self, message: OutgoingTask) -> None:
        """Record the message's creation span and put its context in the headers."""
        with self._tracer.start_as_current_span(
            f"create {message.queue}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "create",
                "messaging.operation.name": "create",
                "messaging.destination.name": message.queue,
                "messaging.message.id": message.id,
                "chicory.task.name": message.task,
            },
        ) as span:
            self._inject(message.headers, trace.set_span_in_context(span))

    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        """Run the task inside a consumer span, child of the message's creation span."""
        parent = self._extract(ctx.headers)
        created = trace.get_current_span(parent).get_span_context()
        links = [Link(created)] if created.is_valid else []
        with self._tracer.start_as_current_span(
            f"process {ctx.queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": ctx.queue,
                "messaging.message.id": ctx.task_id,
                "chicory.task.name": ctx.task_name,
                "chicory.task.attempt": ctx.attempt,
                "chicory.delivery_count": ctx.delivery_count,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await call_next(ctx)
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                span.set_attribute(
                    "chicory.task.outcome", "retried" if ctx.will_retry(exc) else "failed"
                )
                raise
