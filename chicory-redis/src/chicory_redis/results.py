"""The Redis result backend: one string key per task with a TTL, and pub/sub wake-ups.

* ``store`` runs the ``store_result`` script: ``SET ... PX <ttl>`` unless the record is not
  final and a final one is already there; a final record also ``PUBLISH``\\es the task id on
  one channel. The stored value is ``b"F"`` (final) or ``b"P"`` followed by the record.
* ``wait`` does not poll and does not hold a connection per waiter. Each backend instance
  has one pub/sub listener (one connection) subscribed to that channel, started by the
  first ``wait``. A waiter whose final record is there returns after one ``GET``; others
  register an event under their task id, wait until the listener's subscription is
  confirmed, ``GET`` the key (closing the race with a write that happened before), and
  then sleep on the event. After a dropped connection the listener
  re-subscribes and wakes every waiter to ``GET`` again, so nothing published while it was
  away is missed.
* Heartbeats are ``SET <p>:worker:<id> PX <ttl>`` plus a sorted set of worker ids scored by
  expiry, pruned on every heartbeat and listing (no ``KEYS`` or ``SCAN``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from chicory.backend import StoredResult
from chicory.clock import Clock, SystemClock
from chicory.errors import ResultBackendError
from chicory_redis import scripts
from chicory_redis.config import RedisSettings, parse_settings
from chicory_redis.connection import CONNECTION_ERRORS, Backoff, create_client, results_errors
from chicory_redis.keys import KeySpace

__all__ = ["RedisResultBackend"]

log = logging.getLogger("chicory.redis")

_FINAL = b"F"
_PENDING = b"P"
_LISTEN_SECONDS = 5.0  # longest single blocking read of the listener


def _unmark(raw: bytes | str | None) -> tuple[bytes | None, bool]:
    if not raw:
        return None, False
    if isinstance(raw, str):  # only if a client decodes responses
        raw = raw.encode()
    return raw[1:], raw[:1] == _FINAL


class RedisResultBackend:
    """Task records in Redis; see the module docstring.

    Args:
        settings: Connection settings (default: ``redis://localhost:6379/0``).
        clock: Source of time for heartbeat expiry scores (default: the real clock).
    """

    def __init__(self, settings: RedisSettings | None = None, *, clock: Clock | None = None):
        self._settings = settings if settings is not None else RedisSettings()
        self._keys = KeySpace(self._settings.key_prefix)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._client: Redis | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closing = False

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

    @property
    def settings(self) -> RedisSettings:
        """The backend's settings."""
        return self._settings

    @property
    def keys(self) -> KeySpace:
        """The key names this backend uses."""
        return self._keys

    @property
    def display_url(self) -> str:
        """The server URL with the password redacted."""
        return self._settings.display_url

    @property
    def client(self) -> Redis:
        """The connected client.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        if self._client is None:
            raise ResultBackendError(
                "the Redis result backend is not connected; use 'async with backend:'"
            )
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and load the scripts. Idempotent.

        Raises:
            ResultBackendError: Redis cannot be reached.
        """
        if self._client is not None:
            return
        client = create_client(self._settings)
        try:
            with results_errors(self.display_url, "connect"):
                await client.ping()
                await scripts.load_all(client, (scripts.STORE_RESULT,))
        except BaseException:
            await client.aclose(close_connection_pool=True)
            raise
        self._closing = False
        self._subscribed = asyncio.Event()  # fresh: a reconnect may run on another event loop
        self._client = client

    async def close(self) -> None:
        """Stop the listener, wake every waiter with ``None`` and disconnect. Idempotent."""
        self._closing = True
        self._subscribed.set()  # let waiters still waiting for the listener see the close
        self._wake(None)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            try:
                await listener
            except asyncio.CancelledError:
                if not listener.cancelled():
                    raise
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
                (_FINAL if final else _PENDING) + data,
                "1" if final else "0",
                max(1, int(seconds * 1000)),
                self._keys.result_channel,
                task_id,
            ),
        )

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        """Write the record of ``task_id`` with a TTL (one script call, one round trip).

        A non-final record never replaces a final one. A non-positive ``ttl`` uses the
        ``result_ttl`` setting.

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
        calls = [self._store_call(r.task_id, r.data, r.final, ttl) for r in records]
        with results_errors(self.display_url, f"store {len(calls)} results"):
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

    async def _get_final(self, task_id: str) -> bytes | None:
        with results_errors(self.display_url, f"read the result of {task_id}"):
            raw = await self.client.get(self._keys.result(task_id))
        data, final = _unmark(raw)
        return data if final else None

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait for the final record of ``task_id``; ``None`` on timeout or close.

        Returns at once if the final record is there. Shares this backend's one pub/sub
        connection with every other waiter. Cancellation-safe.

        Raises:
            ResultBackendError: Redis could not be reached when reading the record.
        """
        data = await self._get_final(task_id)  # already there: no subscription needed
        if data is not None or (timeout is not None and timeout <= 0):
            return data
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            async with asyncio.timeout(timeout):
                self._start_listener()
                await self._subscribed.wait()
                while not self._closing:
                    event.clear()
                    data = await self._get_final(task_id)
                    if data is not None:
                        return data
                    await event.wait()
        except TimeoutError:
            return None
        finally:
            events = self._waiters.get(task_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[task_id]
        return None

    # -- the listener ----------------------------------------------------------------------

    def _start_listener(self) -> None:
        if self._listener is None and not self._closing:
            _ = self.client
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name=f"chicory-redis-results-listener {self.display_url}"
            )

    def _wake(self, task_id: str | None) -> None:
        if task_id is None:
            for events in self._waiters.values():
                for event in events:
                    event.set()
            return
        for event in self._waiters.get(task_id, ()):
            event.set()

    async def _listen(self) -> None:
        backoff = Backoff(self._settings.reconnect_backoff, self._settings.reconnect_backoff_max)
        channel = self._keys.result_channel
        while not self._closing:
            pubsub: PubSub = self.client.pubsub()
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(timeout=_LISTEN_SECONDS)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        if backoff.failures:
                            log.info("result listener re-subscribed to %s", self.display_url)
                        backoff.reset()
                        self._subscribed.set()
                        self._wake(None)  # anything published while unsubscribed: GET again
                    elif message["type"] == "message":
                        data = message["data"]
                        self._wake(data.decode() if isinstance(data, bytes) else str(data))
            except Exception as exc:
                self._subscribed.clear()
                pause = backoff.next_pause()
                log.warning(
                    "result listener lost Redis at %s (%s: %s); reconnecting in %.2f s",
                    self.display_url,
                    type(exc).__name__,
                    exc,
                    pause,
                    exc_info=not isinstance(exc, CONNECTION_ERRORS),
                )
                await asyncio.sleep(pause)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

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
