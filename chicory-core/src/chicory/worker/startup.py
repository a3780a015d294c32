"""What a worker does around its run: logging its settings, starting and stopping middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from chicory.middleware import overrides

if TYPE_CHECKING:
    from chicory.worker.worker import Worker

__all__ = [
    "GUESSED_RENEW_INTERVAL",
    "log_settings",
    "middleware_lifecycle",
    "settings_of",
    "warn_about_lease",
]

log = logging.getLogger("chicory.worker")

GUESSED_RENEW_INTERVAL = 10.0
"""Seconds between lease renewals when the broker renews leases but declares no length."""


def settings_of(worker: Worker) -> dict[str, Any]:
    """``worker``'s effective settings (URLs redacted): what :func:`log_settings` writes."""
    app = worker.app
    capabilities = app.broker.capabilities
    lease = capabilities.lease_seconds if capabilities.lease_renewal else None
    renew = worker.lease_renew_interval
    if renew is None and lease:
        renew = lease / 3
    modes: dict[str, int] = {}
    for task in app.tasks.values():
        modes[task.delivery_mode.value] = modes.get(task.delivery_mode.value, 0) + 1
    return {
        "worker_id": worker.worker_id,
        "broker": app.broker_description,
        "backend": app.backend_description,
        "queues": list(worker.queues),
        "concurrency": worker.concurrency,
        "prefetch": worker.prefetch,
        "lease_seconds": lease,
        "lease_renew_interval": renew if lease else None,
        "drain_timeout": worker.drain_timeout,
        "default_delivery_mode": app.delivery_mode.value,
        "tasks_by_delivery_mode": modes,
        "middleware": [type(m).__name__ for m in app.middleware],
    }


def log_settings(worker: Worker) -> None:
    """Log ``worker``'s settings in one INFO line, each also a field of the record."""
    if not log.isEnabledFor(logging.INFO):
        return
    settings = settings_of(worker)
    lease = settings["lease_seconds"]
    modes: dict[str, int] = settings["tasks_by_delivery_mode"]
    leases = (
        f"lease={lease:g}s renewed every {settings['lease_renew_interval']:g}s"
        if lease
        else "lease=none"
    )
    tasks = ", ".join(f"{n} {mode}" for mode, n in sorted(modes.items())) or "none"
    text = (
        f"worker {worker.worker_id} settings: broker={settings['broker']} "
        f"backend={settings['backend']} queues={','.join(worker.queues)} "
        f"concurrency={worker.concurrency} prefetch={worker.prefetch} {leases} "
        f"drain_timeout={worker.drain_timeout:g}s "
        f"delivery_mode={settings['default_delivery_mode']} (default; tasks: {tasks}) "
        f"middleware={','.join(settings['middleware']) or 'none'}"
    )
    log.info(text, extra={"event": "worker_settings", **settings})


def warn_about_lease(worker: Worker) -> None:
    """Warn when the broker renews leases but declares no ``lease_seconds``: the worker then
    renews on a guess, and a lease shorter than the guess lets running tasks be redelivered."""
    capabilities = worker.app.broker.capabilities
    if not capabilities.lease_renewal or capabilities.lease_seconds:
        return
    if worker.lease_renew_interval is not None:
        return
    log.warning(
        "the broker %s declares lease_renewal but no lease_seconds, so this worker renews "
        "leases every %g s, a guess: if the broker's lease is shorter, a task running "
        "longer than it is delivered again while it runs. Pass Worker(lease_renew_interval=S) "
        "with S under a third of the broker's lease, or have the broker declare "
        "Capabilities.lease_seconds (its conformance run fails 'lease.declared' until it does)",
        worker.app.broker_description,
        GUESSED_RENEW_INTERVAL,
        extra={"event": "lease_undeclared"},
    )


@asynccontextmanager
async def middleware_lifecycle(worker: Worker) -> AsyncIterator[None]:
    """Await each middleware's ``on_worker_start`` in order; on the way out, the
    ``on_worker_stop`` of those that started, in reverse order."""
    async with AsyncExitStack() as started:
        for middleware in worker.app.middleware:
            if overrides(middleware, "on_worker_start"):
                await middleware.on_worker_start(worker)
            if overrides(middleware, "on_worker_stop"):
                started.push_async_callback(middleware.on_worker_stop, worker)
        yield
