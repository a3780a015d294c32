"""The result backend protocol: where task states, results and worker heartbeats live.

Like brokers, result backends are thin: they store opaque bytes per task id that core
encodes (:mod:`chicory.records`), and they know only one bit about them, whether the record
is *final* (a terminal state that :meth:`ResultBackend.wait` must wake up for).

Cancellation: every coroutine may be cancelled; a cancelled ``store`` may or may not have
been written. ``wait`` must be cancellation-safe and must not poll in a sleep loop: it
wakes on the write itself (an in-process event, a blocking pop, a pub/sub message...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import attrs

__all__ = ["ResultBackend", "StoredResult"]


@attrs.frozen(kw_only=True)
class StoredResult:
    """One record for :meth:`ResultBackend.store_many`.

    Attributes:
        task_id: The task the record belongs to.
        data: Opaque encoded record.
        final: True for a terminal state; wakes waiters.
    """

    task_id: str
    data: bytes
    final: bool


@runtime_checkable
class ResultBackend(Protocol):
    """Stores task records with a TTL and wakes waiters when a final record lands."""

    async def connect(self) -> None:
        """Open connections. Idempotent; called by ``__aenter__``.

        Raises:
            ResultBackendError: the backend cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Close connections and wake every waiter with ``None``. Idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        """Write the record of ``task_id``, replacing an earlier non-final one, expiring
        after ``ttl``s.

        A final record is written once: nothing replaces it until it expires or is
        forgotten, neither a late non-final record (a late "started" must not hide a
        result) nor another final one (a redelivered run storing its result again, or a
        message that claims another task's id, must not change a result already read).
        Such a write is dropped without an error.
        """
        ...

    async def store_many(self, records: Sequence[StoredResult], *, ttl: float) -> None:
        """Write several records in as few round trips as possible (same rules as ``store``)."""
        ...

    async def get(self, task_id: str) -> bytes | None:
        """Return the current record of ``task_id``, or ``None`` if there is none (or expired)."""
        ...

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait until ``task_id`` has a final record and return it; ``None`` on timeout.

        Returns at once if the final record is already there.
        """
        ...

    async def heartbeat(self, worker_id: str, data: bytes, *, ttl: float) -> None:
        """Record that worker ``worker_id`` is alive; the record expires after ``ttl``s."""
        ...

    async def workers(self) -> Mapping[str, bytes]:
        """Return the heartbeat records of the workers currently alive, by worker id."""
        ...
