"""The metrics, created once per registry."""

from __future__ import annotations

import threading
import weakref
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DURATION_BUCKETS", "Metrics"]

DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, float("inf"),
)  # fmt: skip
"""Histogram buckets of run durations and queue waits, in seconds (1 ms to 10 min)."""

_LOCK = threading.Lock()
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()


class Metrics:
    """Chicory's metric families on one registry (see ``docs/observability.md``).

    Use :meth:`on`: a registry refuses a second family of the same name, so every middleware
    on one registry shares one :class:`Metrics`.

    Args:
        registry: Where the families are registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        task = ["task", "queue"]
        self.tasks = Counter(
            "chicory_tasks",
            "Task runs by outcome: succeeded, retried (raised, and runs again) or failed "
            "(raised, and is dead-lettered).",
            [*task, "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "chicory_task_duration_seconds",
            "How long a task run took, middleware inside it included.",
            task,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "chicory_task_queue_wait_seconds",
            "From when a task was due (published, or its eta) to when its first attempt started.",
            task,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "chicory_tasks_in_progress",
            "Task runs in progress.",
            task,
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.dead_letters = Counter(
            "chicory_dead_letters",
            "Messages dead-lettered: failed tasks, and messages that could not run "
            "(task is empty for names this worker does not know).",
            task,
            registry=registry,
        )
        self.redeliveries = Counter(
            "chicory_redeliveries",
            "Messages received that had been delivered before (a worker died or handed them "
            "back, or a lease expired).",
            task,
            registry=registry,
        )
        self.lease_losses = Counter(
            "chicory_lease_losses",
            "Acks refused because the delivery's lease had expired (another worker may run "
            "the task).",
            ["queue"],
            registry=registry,
        )

    @classmethod
    def on(cls, registry: CollectorRegistry | None = None) -> Metrics:
        """The metrics on ``registry`` (default: prometheus_client's global one), created
        on first use."""
        registry = REGISTRY if registry is None else registry
        with _LOCK:
            metrics = _BY_REGISTRY.get(registry)
            if metrics is None:
                metrics = _BY_REGISTRY[registry] = cls(registry)
            return metrics
