"""Waiting for final result records: one pub/sub listener and batched reads per backend.

Every ``wait`` registers a future under its task id; nothing else costs a waiter a
connection or a round trip of its own:

* **Batched existence checks.** Task ids to look at are queued; one reader task takes every
  id queued so far and reads their keys with one ``MGET`` (up to :data:`MGET_CHUNK` keys),
  then the next batch. Waiters started in the same tick (a ``gather`` of many results) share
  one round trip.
* **Records in the notification.** A final record is published on ``<p>:results:final``
  together with its task id (see :mod:`chicory_redis.notifications`); a waiter woken by it
  needs no ``GET``. Records over :data:`INLINE_MAX` bytes are announced by task id only, and their
  waiters read the key (batched like the checks).
* **No missed wake-up.** One listener per backend instance subscribes to the channel. Each
  registered waiter's key is read once after it registered and again after every
  subscription confirmation (the first one, and each re-subscription after a dropped
  connection): a record written before that read is seen by it, and one written after it
  is published while the listener is subscribed.
* **Notifications read in bulk**, and **a silent connection checked**: the listener task
  (:mod:`chicory_redis.listener`) parses the pub/sub connection's bytes itself and pings a
  connection that has gone quiet. The record marks and the notification's layout are
  :mod:`chicory_redis.notifications`.
* **One timer for every timeout.** Deadlines go into one heap of plain tuples with a single
  event-loop timer set for the earliest; a waiter does not schedule (and cancel) a timer of
  its own, which for thousands of waiters costs more than everything else they do. Entries
  of waiters that finished are dropped when the timer passes them, or all at once when they
  outnumber the live ones.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any, Final

from redis.asyncio import Redis

from chicory.errors import ResultBackendError
from chicory_redis.config import RedisSettings
from chicory_redis.connection import CONNECTION_ERRORS
from chicory_redis.keys import KeySpace
from chicory_redis.listener import ResultListener, raw_stream
from chicory_redis.notifications import FINAL, INLINE_MAX, PENDING, parse_notification

__all__ = [
    "FINAL",
    "INLINE_MAX",
    "MGET_CHUNK",
    "PENDING",
    "ResultWaiters",
    "parse_notification",
    "raw_stream",
]

MGET_CHUNK: Final = 1000
"""Most keys read by one ``MGET``."""

Outcome = bytes | ResultBackendError | None
"""What a waiter's future resolves to: the record, the error to raise, or ``None``."""


class ResultWaiters(ResultListener):
    """The waiters of one result backend instance; see the module docstring.

    Args:
        client: Returns the backend's connected client (raises if it is not connected).
        keys: The backend's key names.
        settings: The backend's settings (back-off, display URL).
    """

    def __init__(
        self, client: Callable[[], Redis], keys: KeySpace, settings: RedisSettings
    ) -> None:
        self._client = client
        self._keys = keys
        self._settings = settings
        self._waiting: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._unchecked: dict[str, None] = {}  # ids to read, in order (a set with order)
        self._reader: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._deadlines: list[tuple[float, int, asyncio.Future[Outcome]]] = []
        self._order = itertools.count()  # ties between equal deadlines: never compare futures
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self.reads = 0
        """How many ``MGET`` round trips waiters have cost so far."""
        self.bulk_reads = True
        """Whether the listener reads its connection's bytes itself (see the module docs);
        with ``False`` (or where redis-py hides them) it reads through ``PubSub``."""

    def open(self) -> None:
        """Accept waiters again (after :meth:`close`, on connect)."""
        self._closing = False

    @property
    def waiting(self) -> int:
        """How many task ids have at least one waiter."""
        return len(self._waiting)

    @property
    def timeouts(self) -> int:
        """How many deadlines are kept (live waiters', and finished ones not dropped yet)."""
        return len(self._deadlines)

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait for the final record of ``task_id``; ``None`` on timeout or close.

        Raises:
            ResultBackendError: Redis could not be reached when reading the record.
        """
        if self._closing:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._waiting.setdefault(task_id, []).append(future)
        self._unchecked[task_id] = None
        self._start(loop)
        if timeout is not None:
            self._add_deadline(loop, loop.time() + timeout, future)
        try:
            outcome = await future  # None when the deadline passes first
        finally:
            futures = self._waiting.get(task_id)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[task_id]
        if isinstance(outcome, ResultBackendError):
            raise outcome
        return outcome

    async def close(self) -> None:
        """Stop the listener and the reader and wake every waiter with ``None``."""
        self._closing = True
        waiting, self._waiting = self._waiting, {}
        self._unchecked.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at, self._deadlines = None, math.inf, []
        for futures in waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)
        # Tasks of a loop that was closed without finishing them can be neither cancelled
        # nor awaited any more: they are dropped (a later connect starts new ones).
        tasks = [t for t in (self._listener, self._reader) if t is not None]
        self._listener = self._reader = None
        live = [t for t in tasks if not t.get_loop().is_closed()]
        for task in live:
            task.cancel()
        for task in live:
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise

    # -- timeouts --------------------------------------------------------------------------

    def _add_deadline(
        self, loop: asyncio.AbstractEventLoop, at: float, future: asyncio.Future[Outcome]
    ) -> None:
        deadlines = self._deadlines
        heapq.heappush(deadlines, (at, next(self._order), future))
        if at < self._timer_at:
            self._set_timer(loop, at)
        if len(deadlines) > 1024 + 2 * len(self._waiting):  # mostly finished: drop those
            self._deadlines = [entry for entry in deadlines if not entry[2].done()]
            heapq.heapify(self._deadlines)

    def _set_timer(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._expire, loop)
        self._timer_at = at

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out every waiter whose deadline passed; set the timer for the next one."""
        self._timer, self._timer_at = None, math.inf
        deadlines, now = self._deadlines, loop.time()
        while deadlines and (deadlines[0][0] <= now or deadlines[0][2].done()):
            future = heapq.heappop(deadlines)[2]
            if not future.done():
                future.set_result(None)
        if deadlines:
            self._set_timer(loop, deadlines[0][0])

    # -- resolving -------------------------------------------------------------------------

    def _resolve(self, task_id: str, data: bytes) -> None:
        for future in self._waiting.pop(task_id, ()):
            if not future.done():
                future.set_result(data)

    def _fail(self, task_id: str, error: ResultBackendError) -> None:
        for future in self._waiting.pop(task_id, ()):
            if not future.done():
                future.set_result(error)  # a result, not an exception: never "unretrieved"

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closing:
            return
        if self._listener is None:
            self._listener = loop.create_task(
                self._listen(), name=f"chicory-redis-results-listener {self._settings.display_url}"
            )
        if self._reader is None and self._unchecked:
            self._reader = loop.create_task(self._read(), name="chicory-redis-results-reader")

    def _check_all(self) -> None:
        """Queue every waiting id for a read (after a subscription confirmation)."""
        self._unchecked.update(dict.fromkeys(self._waiting))
        self._start(asyncio.get_running_loop())

    # -- the reader ------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while self._unchecked and not self._closing:
                ids = [i for i in self._unchecked if i in self._waiting]
                self._unchecked.clear()
                for start in range(0, len(ids), MGET_CHUNK):
                    await self._read_chunk(ids[start : start + MGET_CHUNK])
        finally:
            self._reader = None
        if self._unchecked and not self._closing:  # queued while the last read was finishing
            self._start(asyncio.get_running_loop())

    async def _read_chunk(self, ids: list[str]) -> None:
        ids = [i for i in ids if i in self._waiting]  # some may have been resolved meanwhile
        if not ids:
            return
        self.reads += 1
        result_key = self._keys.result
        keys = [result_key(i) for i in ids]
        try:
            try:
                raws: list[Any] = await self._client().mget(keys)
            except CONNECTION_ERRORS:
                # A pooled connection that died with a restarted server fails its first
                # command; redis-py has dropped it, and a read is safe to repeat once.
                raws = await self._client().mget(keys)
        except Exception as exc:  # connection, server or anything else: the waiters raise it
            error = ResultBackendError(
                f"could not read {len(ids)} result(s) on the Redis result backend at "
                f"{self._settings.display_url}: {exc}"
            )
            error.__cause__ = exc
            for task_id in ids:
                self._fail(task_id, error)
            return
        for task_id, raw in zip(ids, raws, strict=True):
            if raw and raw[:1] == FINAL:
                self._resolve(task_id, raw[1:])
