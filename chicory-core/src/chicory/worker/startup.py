"""What a worker does around its run: logging its settings, starting and stopping middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from chicory.middleware import overrides

if TYPE_CHECKING:
    from chicory.worker.worker import Worker

__all__ = ["log_settings", "middleware_lifecycle", "settings_of"]

log = logging.getLogger("chicory.worker")


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
