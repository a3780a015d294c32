"""Events passed to observer hooks (logging, metrics, tracing)."""

from __future__ import annotations

from datetime import datetime

import attrs

from chicory.records import ErrorInfo

__all__ = ["TaskEvent", "WorkerEvent"]


@attrs.frozen(kw_only=True)
class TaskEvent:
    """Something happened to one task in a worker.

    Attributes:
        task_id: The task's id.
        task_name: Its registered name (the raw name for unknown tasks, ``""`` if unreadable).
        queue: The queue it came from.
        attempt: Its attempt number (1-based; 0 if the message could not be decoded).
        delivery_mode: ``"at_most_once"`` or ``"at_least_once"`` (``""`` if unknown).
        worker_id: The worker it happened in.
        at: Aware-UTC time of the event.
        runtime: Seconds the function ran, on finished attempts.
        error: The exception, on retried and failed attempts.
        delay: Seconds until the retry, on retried attempts.
        reason: Why, on failures, dead letters and lost leases.
        delivery_count: How often the broker delivered the message, on redeliveries.
    """

    task_id: str
    task_name: str
    queue: str
    attempt: int
    delivery_mode: str
    worker_id: str
    at: datetime
    runtime: float | None = None
    error: ErrorInfo | None = None
    delay: float | None = None
    reason: str | None = None
    delivery_count: int | None = None


@attrs.frozen(kw_only=True)
class WorkerEvent:
    """A worker started or is stopping.

    Attributes:
        worker_id: The worker's id.
        queues: The queues it consumes.
        concurrency: Its concurrency limit.
        broker: The broker's redacted description.
        at: Aware-UTC time of the event.
    """

    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    broker: str
    at: datetime
