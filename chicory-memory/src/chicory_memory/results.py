"""``memory://`` results: the in-process result backend.

Where things are stored:

* ``_records``: task id -> ``(data, final, expires_at)``. A record past ``expires_at`` on the
  clock counts as absent; expired records are also swept out on each store, through
  ``_expiry``, a heap of ``(expires_at, task_id)`` whose stale entries are skipped.
* ``_workers``: worker id -> ``(data, expires_at)`` heartbeat records, swept when listed.
* ``_waiters``: task id -> the :class:`anyio.Event` of each ``wait()`` in progress. Storing a
  final record sets them; ``close()`` sets all of them (the waits then return ``None``).
* ``_progress_watchers``: task id -> the streams of ``watch_progress()`` subscriptions, each
  sent every progress record of that task as it is stored (:mod:`chicory.progress`).
* ``_joins``: group id -> ``(member records by index, expires_at)`` for
  :class:`chicory.workflow.joins.GroupJoins`; a join is one synchronous step, so atomic.
* ``_revoked``: task id -> expiry of its revocation record (``AsyncResult.cancel()``), and
  ``_watchers``: the streams of ``watch_revocations()`` subscriptions, each sent every new
  revocation at once (see :mod:`chicory.revocation`). The methods that keep them are the
  mixin :class:`~chicory_memory.revocations.RevocationMethods`.

Like the memory broker, the data belongs to the object: ``close()`` wakes waiters and stops
accepting operations, and a later ``connect()`` finds the records as they were (minus those
that expired). While not connected, every operation raises
:class:`~chicory.errors.ResultBackendError`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, NamedTuple, Self

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from chicory.backend import StoredResult
from chicory.clock import Clock, SystemClock
from chicory.errors import ConfigurationError, ResultBackendError
from chicory.urloptions import Converter
from chicory_memory.revocations import RevocationMethods
from chicory_memory.urls import parse_memory_url

__all__ = ["MemoryResultBackend"]

# The app gives the result backend the broker's URL when both are memory://, so the
# broker's options are accepted here and ignored.
_URL_OPTIONS: dict[str, Converter | None] = {  # the broker's options, accepted and ignored
    "lease_seconds": None,
    "max_deliveries": None,
    "max_body_bytes": None,
    "dead_letter_max_count": None,
    "dead_letter_max_age": None,
}


class _Record(NamedTuple):
    data: bytes
    final: bool
    expires_at: float


class MemoryResultBackend(RevocationMethods):
    """An in-process result backend with clock-judged TTLs and event-driven waits.

    Args:
        clock: Source of time for TTLs (default: the real clock).
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._records: dict[str, _Record] = {}
        self._expiry: list[tuple[float, str]] = []
        self._workers: dict[str, tuple[bytes, float]] = {}
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._revoked: dict[str, float] = {}
        self._joins: dict[str, tuple[dict[int, bytes], float]] = {}
        self._progress_watchers: dict[str, set[MemoryObjectSendStream[bytes]]] = {}
        self._watchers: set[MemoryObjectSendStream[tuple[str, float]]] = set()
        self._connected = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryResultBackend:
        """Build a backend from ``memory://``; the memory broker's query options are ignored.

        Raises:
            ConfigurationError: not a ``memory://`` URL, or an unknown option.
        """
        parse_memory_url(url, _URL_OPTIONS)
        unknown = sorted(set(options) - {"clock"})
        if unknown:
            raise ConfigurationError(
                f"unknown memory result backend option(s) {', '.join(unknown)}; accepted: clock"
            )
        return cls(**options)

    def __repr__(self) -> str:
        state = "connected" if self._connected else "not connected"
        return f"<MemoryResultBackend records={len(self._records)} {state}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start accepting operations. Idempotent."""
        self._connected = True

    async def close(self) -> None:
        """Stop accepting operations and wake every waiter with ``None``. Idempotent."""
        self._connected = False
        for events in self._waiters.values():
            for event in events:
                event.set()
        self._waiters.clear()
        self._close_revocation_watchers()
        for streams in self._progress_watchers.values():
            for stream in streams:
                stream.close()
        self._progress_watchers.clear()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_connected(self) -> None:
        if not self._connected:
            raise ResultBackendError(
                "the memory result backend is not connected (never connected, or closed); "
                "use 'async with backend:' or 'await backend.connect()' first"
            )

    # -- records ---------------------------------------------------------------------------

    def _live(self, task_id: str, now: float) -> _Record | None:
        record = self._records.get(task_id)
        if record is None or record.expires_at <= now:
            return None
        return record

    def _put(self, task_id: str, data: bytes, final: bool, ttl: float, now: float) -> None:
        current = self._live(task_id, now)
        if current is not None and current.final:
            return  # the first final record stays (a late one of any kind is not written)
        expires_at = now + ttl
        self._records[task_id] = _Record(data, final, expires_at)
        heapq.heappush(self._expiry, (expires_at, task_id))
        if final:
            events = self._waiters.pop(task_id, None)
            if events:
                for event in events:
                    event.set()

    def _sweep(self, now: float) -> None:
        expiry, records = self._expiry, self._records
        while expiry and expiry[0][0] <= now:
            _, task_id = heapq.heappop(expiry)
            record = records.get(task_id)
            if record is not None and record.expires_at <= now:
                del records[task_id]

    @staticmethod
    def _check_ttl(ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl}")

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        """Write the record of ``task_id``, expiring ``ttl`` seconds from now on the clock.

        A live final record is never replaced (the first final record wins; a second
        one, from a redelivered run or a message claiming this id, is dropped without an
        error). A final record wakes waiters.

        Raises:
            ResultBackendError: the backend is not connected.
            ValueError: ``ttl`` is not positive.
        """
        self._check_connected()
        self._check_ttl(ttl)
        now = self._clock.time()
        self._sweep(now)
        self._put(task_id, data, final, ttl, now)

    async def store_many(self, records: Sequence[StoredResult], *, ttl: float) -> None:
        """Write several records, in order, with the rules of :meth:`store`.

        Raises:
            ResultBackendError: the backend is not connected.
            ValueError: ``ttl`` is not positive.
        """
        self._check_connected()
        self._check_ttl(ttl)
        now = self._clock.time()
        self._sweep(now)
        for record in records:
            self._put(record.task_id, record.data, record.final, ttl, now)

    async def get(self, task_id: str) -> bytes | None:
        """Return the live record of ``task_id``, or ``None``.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        record = self._live(task_id, self._clock.time())
        return record.data if record is not None else None

    async def forget(self, task_id: str) -> bool:
        """Delete the record of ``task_id``, as a replay re-opening the task does.

        Returns:
            Whether there was a live record.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        live = self._live(task_id, self._clock.time()) is not None
        self._records.pop(task_id, None)
        return live

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait for the final record of ``task_id``; ``None`` on timeout or close.

        Returns at once if a final record is already there. Sleeps on an event that the
        final store sets; never polls. Cancellation-safe.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        record = self._live(task_id, self._clock.time())
        if record is not None and record.final:
            return record.data
        if timeout is not None and timeout <= 0:
            return None
        event = anyio.Event()
        waiters = self._waiters.setdefault(task_id, set())
        waiters.add(event)
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            waiters.discard(event)
            if not waiters and self._waiters.get(task_id) is waiters:
                del self._waiters[task_id]
        if not self._connected:
            return None
        record = self._live(task_id, self._clock.time())
        return record.data if record is not None and record.final else None

    # -- progress --------------------------------------------------------------------------

    async def store_progress(self, task_id: str, data: bytes, *, ttl: float) -> None:
        """Store ``data`` as the non-final record of ``task_id`` (never over a final one)
        and send it to every ``watch_progress`` subscriber of ``task_id``.

        Raises:
            ResultBackendError: the backend is not connected.
            ValueError: ``ttl`` is not positive.
        """
        self._check_connected()
        self._check_ttl(ttl)
        now = self._clock.time()
        current = self._live(task_id, now)
        if current is not None and current.final:
            return
        self._sweep(now)
        self._put(task_id, data, False, ttl, now)
        for stream in list(self._progress_watchers.get(task_id, ())):
            try:
                stream.send_nowait(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._progress_watchers[task_id].discard(stream)

    @asynccontextmanager
    async def watch_progress(self, task_id: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Subscribe to the progress records of ``task_id`` as they are stored.

        The iterator ends when the backend is closed.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        send, receive = anyio.create_memory_object_stream[bytes](math.inf)
        streams = self._progress_watchers.setdefault(task_id, set())
        streams.add(send)
        try:
            async with receive:
                yield receive
        finally:
            streams.discard(send)
            if not streams and self._progress_watchers.get(task_id) is streams:
                del self._progress_watchers[task_id]
            send.close()

    # -- group joins -----------------------------------------------------------------------

    async def join(
        self, group_id: str, index: int, size: int, data: bytes, *, ttl: float
    ) -> list[bytes] | None:
        """Record member ``index`` of the ``size`` members of ``group_id``; every member's
        record in index order if all are recorded now, else ``None`` (see
        :class:`chicory.workflow.joins.GroupJoins`).

        Raises:
            ResultBackendError: the backend is not connected.
            ValueError: ``index`` is not in ``range(size)``, or ``ttl`` is not positive.
        """
        self._check_connected()
        self._check_ttl(ttl)
        if not 0 <= index < size:
            raise ValueError(f"member index {index} is not in range({size})")
        now = self._clock.time()
        if len(self._joins) > 1000:  # expired groups go now and then, not on every call
            self._joins = {g: entry for g, entry in self._joins.items() if entry[1] > now}
        members, expires_at = self._joins.get(group_id, ({}, 0.0))
        if expires_at <= now:
            members = {}
        members[index] = data
        self._joins[group_id] = (members, now + ttl)
        if len(members) < size or any(i not in members for i in range(size)):
            return None
        return [members[i] for i in range(size)]

    # -- heartbeats ------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, data: bytes, *, ttl: float) -> None:
        """Record that ``worker_id`` is alive until ``ttl`` seconds from now on the clock.

        Raises:
            ResultBackendError: the backend is not connected.
            ValueError: ``ttl`` is not positive.
        """
        self._check_connected()
        self._check_ttl(ttl)
        self._workers[worker_id] = (data, self._clock.time() + ttl)

    async def workers(self) -> Mapping[str, bytes]:
        """Return the heartbeat records of live workers, by worker id; drop expired ones.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        now = self._clock.time()
        expired = [wid for wid, (_, until) in self._workers.items() if until <= now]
        for worker_id in expired:
            del self._workers[worker_id]
        return {worker_id: data for worker_id, (data, _) in self._workers.items()}
