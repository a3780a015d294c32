"""Cancelling tasks across processes and machines: revocation records on the result backend.

``AsyncResult.cancel()`` (and ``chicory cancel``, through :meth:`chicory.admin.Admin.cancel`)
writes a **revocation record**: the task id, kept for a TTL, in the app's result backend,
and pushed at once to every worker watching. Each worker keeps the live records in memory:

* loaded when it starts, and read again every :data:`RESYNC_SECONDS` (a push missed while a
  connection was down is caught up then);
* updated by each push as it arrives.

Before a task starts, the worker looks its id up in that in-memory set (nothing is read from
the backend per task, and nothing at all while no record exists); a revoked task is not run
but recorded ``CANCELLED`` and acked. A push for a task running on the worker cancels that
run (see :mod:`chicory.worker.slots`). A task that falls due after its revocation expired
runs: the TTL (the app's ``result_ttl`` unless the caller gives one) should outlive the
task's wait in the queue; ``chicory cancel`` also removes a delayed task from its queue where
the broker can list delayed messages (:mod:`chicory.delayed`).

A result backend offers this by implementing :class:`Revocations` (the memory and Redis
backends do; the conformance suite's ``RevocationSuite`` holds a backend to it). On other
backends ``cancel()`` raises :class:`~chicory.errors.CapabilityError` and workers run every
task they receive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol, runtime_checkable

from chicory.backend import ResultBackend
from chicory.errors import CapabilityError

__all__ = ["RESYNC_SECONDS", "Revocations", "revocations_of"]

RESYNC_SECONDS: Final = 30.0
"""How often a worker reads every live revocation record again."""


@runtime_checkable
class Revocations(Protocol):
    """A result backend that stores revocation records and pushes them to workers.

    Every method may raise :class:`~chicory.errors.ResultBackendError` when the backend
    cannot be reached, and may be cancelled (a cancelled ``revoke`` may or may not have
    been recorded).
    """

    async def revoke(self, task_id: str, *, ttl: float) -> None:
        """Record that ``task_id`` is cancelled, for ``ttl`` seconds, and push it to every
        watcher (:meth:`watch_revocations`). Revoking again extends the record."""
        ...

    async def revocations(self) -> dict[str, float]:
        """Every live revocation record: task id -> when it expires (seconds since the
        epoch, on the backend's clock)."""
        ...

    def watch_revocations(self) -> AbstractAsyncContextManager[AsyncIterator[tuple[str, float]]]:
        """Subscribe to revocations as they are recorded.

        Entering the context subscribes (every ``revoke`` from then on is delivered); the
        iterator yields ``(task_id, expires_at)`` for each. It may end or raise when the
        connection drops: the caller subscribes again and reads :meth:`revocations`.
        """
        ...


def revocations_of(backend: ResultBackend, *, needed_for: str) -> Revocations:
    """Return ``backend`` as a :class:`Revocations`, or say why it is not one.

    Raises:
        CapabilityError: the backend does not implement revocation records.
    """
    if not isinstance(backend, Revocations):
        raise CapabilityError(
            f"{needed_for} needs a result backend that stores revocation records, and "
            f"{backend!r} does not (it lacks revoke/revocations/watch_revocations); use the "
            "memory:// or redis:// result backend, or a plugin that offers them"
        )
    return backend
