"""The Redis result backend: one string key per task with a TTL, and pub/sub wake-ups.

* ``store`` runs the ``store_result`` script: ``SET ... PX <ttl>`` unless a final record is
  already there (the first final record wins, whatever comes later); a final record is
  also ``PUBLISH``\\ed, with its task id, on one channel (records
  over :data:`~chicory_redis.notifications.INLINE_MAX` bytes by task id only). The
  stored value is ``b"F"`` (final) or ``b"P"`` followed by the record.
* ``wait`` does not poll and does not hold a connection or a round trip per waiter: see
  :mod:`chicory_redis.waiters` (one pub/sub listener per backend instance, existence checks
  of concurrent waiters batched into one ``MGET``, records delivered in the notification).
* Progress (:mod:`chicory.progress`): ``store_progress`` writes the non-final record and
  publishes it on ``<p>:progress:<task id>`` in one script; ``watch_progress`` subscribes to
  that channel on a connection of its own.
* Group joins (:mod:`chicory.workflow.joins`) are one hash per group, ``<p>:group:<id>``,
  member index -> record, with the group's TTL; the ``join_group`` script records a member
  and returns the whole group when complete, atomically.
* Heartbeats are ``SET <p>:worker:<id> PX <ttl>`` plus a sorted set of worker ids scored by
  expiry, pruned on every heartbeat and listing (no ``KEYS`` or ``SCAN``).
* Revocation records: :mod:`chicory_redis.revoking`; the settings, keys, clock, client and
  waiters every face shares: :mod:`chicory_redis.results_base`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

from chicory.backend import StoredResult
from chicory.clock import Clock
from chicory_redis import scripts
from chicory_redis.config import parse_settings
from chicory_redis.connection import results_errors
from chicory_redis.notifications import FINAL, INLINE_MAX, PENDING
from chicory_redis.revoking import RevocationMethods

__all__ = ["RedisResultBackend"]


def _unmark(raw: bytes | str | None) -> tuple[bytes | None, bool]:
    """A stored value's record (its mark dropped) and whether it is final."""
    if not raw:
        return None, False
    if isinstance(raw, str):  # only if a client decodes responses
        raw = raw.encode()
    return raw[1:], raw[:1] == FINAL


class RedisResultBackend(RevocationMethods):
    """Task records in Redis; see the module docstring.

    Args:
        settings: Connection settings (default: ``redis://localhost:6379/0``).
        clock: Source of time for heartbeat expiry scores (default: the real clock).
    """

    @classmethod
    def from_url(
        cls, url: str = "redis://localhost:6379/0", *, clock: Clock | None = None, **options: Any
    ) -> RedisResultBackend:
        """Build a result backend from a URL and options (see :mod:`chicory_redis.config`).

        Raises:
            ConfigurationError: bad URL or option.
        """
        return cls(parse_settings(url, **options), clock=clock)

    def __repr__(self) -> str:
        return f"<RedisResultBackend {self.display_url}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and load the scripts. Idempotent.

        Raises:
            ResultBackendError: Redis cannot be reached.
        """
        if self._client is not None:
            return
        needed = (
            scripts.STORE_RESULT,
            scripts.STORE_RESULTS,
            scripts.STORE_PROGRESS,
            scripts.JOIN_GROUP,
        )
        client = await scripts.open_client(self._settings, needed, results_errors)
        self._waiters.open()
        self._client = client

    async def close(self) -> None:
        """Stop the listener, wake every waiter with ``None`` and disconnect. Idempotent."""
        try:
            await self._waiters.close()
        finally:  # forget the client even when closing it fails (its event loop ended)
            client, self._client = self._client, None
            if client is not None:
                await client.aclose(close_connection_pool=True)

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

    # -- records ---------------------------------------------------------------------------

    def _store_call(self, task_id: str, data: bytes, final: bool, ttl: float) -> scripts.Call:
        seconds = ttl if ttl > 0 else self._settings.result_ttl
        return scripts.Call(
            scripts.STORE_RESULT,
            (self._keys.result(task_id),),
            (
                (FINAL if final else PENDING) + data,
                ("1" if len(data) <= INLINE_MAX else "2") if final else "0",
                max(1, int(seconds * 1000)),
                self._keys.result_channel,
                task_id,
            ),
        )

    def _store_many_call(self, records: Sequence[StoredResult], ttl: float) -> scripts.Call:
        seconds = ttl if ttl > 0 else self._settings.result_ttl
        result_key = self._keys.result
        args: list[scripts.Arg] = [self._keys.result_channel, max(1, int(seconds * 1000))]
        for r in records:
            data = r.data
            if r.final:
                args += (FINAL + data, "1" if len(data) <= INLINE_MAX else "2", r.task_id)
            else:
                args += (PENDING + data, "0", r.task_id)
        return scripts.Call(scripts.STORE_RESULTS, [result_key(r.task_id) for r in records], args)

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        """Write the record of ``task_id`` with a TTL (one script call, one round trip).

        A final record is never replaced (the first one wins; a later write is dropped
        without an error). A non-positive ``ttl`` uses the ``result_ttl`` setting.

        Raises:
            ResultBackendError: Redis could not be reached or refused the write.
        """
        call = self._store_call(task_id, data, final, ttl)
        with results_errors(self.display_url, f"store the result of {task_id}"):
            await scripts.run(self.client, call.script, call.keys, call.args)

    async def store_many(self, records: Sequence[StoredResult], *, ttl: float) -> None:
        """Write several records in one pipelined round trip (same rules as ``store``).

        Raises:
            ResultBackendError: Redis could not be reached or refused a write.
        """
        calls = [
            self._store_call(chunk[0].task_id, chunk[0].data, chunk[0].final, ttl)
            if len(chunk) == 1
            else self._store_many_call(chunk, ttl)
            for chunk in scripts.chunked(records, lambda r: len(r.data))
        ]
        with results_errors(self.display_url, f"store {len(records)} results"):
            results = await scripts.run_many(self.client, calls)
            for result in results:
                if isinstance(result, Exception):
                    raise result

    async def get(self, task_id: str) -> bytes | None:
        """Return the current record of ``task_id``, or ``None``.

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        with results_errors(self.display_url, f"read the result of {task_id}"):
            raw = await self.client.get(self._keys.result(task_id))
        return _unmark(raw)[0]

    async def forget(self, task_id: str) -> bool:
        """Delete the record of ``task_id`` (``DEL``), as a replay re-opening the task does.

        Returns:
            Whether there was a record.

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        with results_errors(self.display_url, f"forget the result of {task_id}"):
            return bool(await self.client.delete(self._keys.result(task_id)))

    async def _get_final(self, task_id: str) -> bytes | None:
        with results_errors(self.display_url, f"read the result of {task_id}"):
            raw = await self.client.get(self._keys.result(task_id))
        data, final = _unmark(raw)
        return data if final else None

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait for the final record of ``task_id``; ``None`` on timeout or close.

        Returns as soon as the final record is there (one batched ``MGET`` shared with the
        other waiters of the moment, or the record published with its notification).
        Shares this backend's one pub/sub connection with every other waiter.
        Cancellation-safe.

        Raises:
            ResultBackendError: Redis could not be reached when reading the record.
        """
        if timeout is not None and timeout <= 0:
            return await self._get_final(task_id)
        _ = self.client  # not connected: fail now, like every other call
        return await self._waiters.wait(task_id, timeout)

    # -- progress --------------------------------------------------------------------------

    async def store_progress(self, task_id: str, data: bytes, *, ttl: float) -> None:
        """Write the progress record of ``task_id`` (never over a final one) and publish it
        to its watchers (one script call).

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        seconds = ttl if ttl > 0 else self._settings.result_ttl
        args = (PENDING + data, max(1, int(seconds * 1000)), self._keys.progress_channel(task_id))
        key = self._keys.result(task_id)
        with results_errors(self.display_url, f"store the progress of {task_id}"):
            await scripts.run(self.client, scripts.STORE_PROGRESS, (key,), args)

    @asynccontextmanager
    async def watch_progress(self, task_id: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Subscribe (on a connection of its own) to the progress records of ``task_id``.

        The iterator raises :class:`~chicory.errors.ResultBackendError` when the connection
        drops.

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        pubsub = self.client.pubsub()
        try:
            with results_errors(self.display_url, f"subscribe to the progress of {task_id}"):
                await pubsub.subscribe(self._keys.progress_channel(task_id))
            yield self._progress_from(pubsub, task_id)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _progress_from(self, pubsub: Any, task_id: str) -> AsyncIterator[bytes]:
        while True:
            with results_errors(self.display_url, f"receive the progress of {task_id}"):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is None or message.get("type") != "message":
                continue
            data = message.get("data")
            if isinstance(data, str):
                data = data.encode()
            if isinstance(data, bytes) and data[:1] == PENDING:
                yield data[1:]

    # -- group joins -----------------------------------------------------------------------

    async def join(
        self, group_id: str, index: int, size: int, data: bytes, *, ttl: float
    ) -> list[bytes] | None:
        """Record member ``index`` of the ``size`` members of ``group_id`` and return every
        member's record in index order if all are recorded now, else ``None`` (one script
        call; see :class:`chicory.workflow.joins.GroupJoins`).

        Raises:
            ResultBackendError: Redis could not be reached.
            ValueError: ``index`` is not in ``range(size)``, or ``ttl`` is not positive.
        """
        if not 0 <= index < size:
            raise ValueError(f"member index {index} is not in range({size})")
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        key = self._keys.flow_group(group_id)
        args = (index, size, data, max(1, int(ttl * 1000)))
        with results_errors(self.display_url, f"join member {index} of group {group_id}"):
            found = await scripts.run(self.client, scripts.JOIN_GROUP, (key,), args)
        return None if not found else [bytes(record) for record in found]

    # -- heartbeats ------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, data: bytes, *, ttl: float) -> None:
        """Record that ``worker_id`` is alive for ``ttl`` seconds (one round trip).

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        now_ms = int(self._clock.time() * 1000)
        ttl_ms = max(1, int(ttl * 1000))
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._keys.worker(worker_id), data, px=ttl_ms)
        pipe.zadd(self._keys.workers, {worker_id: now_ms + ttl_ms})
        pipe.zremrangebyscore(self._keys.workers, "-inf", now_ms)
        with results_errors(self.display_url, f"record the heartbeat of {worker_id}"):
            await pipe.execute()

    async def workers(self) -> Mapping[str, bytes]:
        """Return the heartbeat records of live workers, by worker id (two round trips).

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        now_ms = int(self._clock.time() * 1000)
        client = self.client
        with results_errors(self.display_url, "list workers"):
            pipe = client.pipeline(transaction=False)
            pipe.zremrangebyscore(self._keys.workers, "-inf", now_ms)
            pipe.zrange(self._keys.workers, 0, -1)
            _, members = await pipe.execute()
            ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
            pipe = client.pipeline(transaction=False)
            for worker_id in ids:
                pipe.get(self._keys.worker(worker_id))
            records = await pipe.execute() if ids else []
        return {wid: rec for wid, rec in zip(ids, records, strict=True) if rec is not None}
