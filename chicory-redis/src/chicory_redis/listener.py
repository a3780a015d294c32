"""The result listener: one pub/sub subscription per backend, turning notifications into
resolved waiters.

The listener task of :class:`~chicory_redis.waiters.ResultWaiters` subscribes to
``<p>:results:final`` and, for every notification of a task somebody waits for, resolves
its waiters with the record it carries, or queues the task id for a batched read when the
record was too big to publish (:mod:`chicory_redis.notifications`). It reconnects with
back-off when the connection drops, and each subscription confirmation queues every waiting
id for a read again, so nothing published while unsubscribed is missed.

* **Notifications read in bulk.** The listener reads the pub/sub connection's bytes and
  parses every complete reply in them with hiredis: about 2 µs a notification, where
  redis-py's per-message path (a health check, a retry wrapper, a timeout context and
  push handling for every message) costs about 25 µs. The byte stream is not public
  redis-py API (``Connection._reader``), so where it is missing the listener falls back to
  ``PubSub.parse_response``.
* **A silent connection is checked.** When the listener has read nothing for
  ``health_check_interval`` seconds it sends ``PING``; if nothing arrives within as long
  again, the connection is taken for dead and replaced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from chicory_redis.config import RedisSettings
from chicory_redis.connection import CONNECTION_ERRORS, Backoff
from chicory_redis.keys import KeySpace
from chicory_redis.notifications import parse_notification

if TYPE_CHECKING:
    from chicory_redis.waiters import Outcome

__all__ = ["ResultListener", "raw_stream"]

log = logging.getLogger("chicory.redis")

_LISTEN_SECONDS = 5.0  # longest single blocking read of the listener (redis-py's reads)
_READ_SIZE = 1 << 16  # bytes asked for per read of the listener's byte stream
_FEED_SIZE = 4096  # bytes handed to the reply parser at a time (see _read_bulk)


def raw_stream(pubsub: PubSub) -> asyncio.StreamReader | None:
    """The byte stream of ``pubsub``'s connection, where this redis-py exposes it."""
    stream = getattr(pubsub.connection, "_reader", None)
    return stream if isinstance(stream, asyncio.StreamReader) else None


class ResultListener:
    """The listener task of :class:`~chicory_redis.waiters.ResultWaiters`."""

    _client: Callable[[], Redis]
    _keys: KeySpace
    _settings: RedisSettings
    _waiting: dict[str, list[asyncio.Future[Outcome]]]
    _unchecked: dict[str, None]
    _closing: bool
    bulk_reads: bool

    if TYPE_CHECKING:  # the waiters' side, in chicory_redis.waiters

        def _resolve(self, task_id: str, data: bytes) -> None: ...

        def _start(self, loop: asyncio.AbstractEventLoop) -> None: ...

        def _check_all(self) -> None: ...

    def _on_message(self, payload: bytes) -> None:
        """Resolve the waiters of a notification's task (or queue it for a read)."""
        parsed = parse_notification(payload)
        if parsed is None:
            return
        task_id, record = parsed
        if task_id not in self._waiting:
            return
        if record is not None:
            self._resolve(task_id, record)
        else:
            self._unchecked[task_id] = None
            self._start(asyncio.get_running_loop())

    async def _listen(self) -> None:
        """Subscribe and read notifications until closed, reconnecting with back-off."""
        settings = self._settings
        backoff = Backoff(settings.reconnect_backoff, settings.reconnect_backoff_max)
        channel = self._keys.result_channel
        while not self._closing:
            pubsub: PubSub | None = None
            try:
                pubsub = self._client().pubsub()
                await pubsub.subscribe(channel)
                stream = raw_stream(pubsub) if self.bulk_reads else None
                if stream is not None:
                    await self._read_bulk(pubsub, stream, backoff)
                else:
                    await self._read_parsed(pubsub, backoff)
            except GeneratorExit:
                # Finalized with the event loop it ran on already closed: nothing can be
                # awaited any more, so the connection is left to the garbage collector.
                pubsub = None
                raise
            except Exception as exc:
                pause = backoff.next_pause()
                log.warning(
                    "result listener lost Redis at %s (%s: %s); reconnecting in %.2f s",
                    settings.display_url,
                    type(exc).__name__,
                    exc,
                    pause,
                    exc_info=not isinstance(exc, CONNECTION_ERRORS),
                )
                await asyncio.sleep(pause)
            finally:
                if pubsub is not None:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read_bulk(
        self, pubsub: PubSub, stream: asyncio.StreamReader, backoff: Backoff
    ) -> None:
        """Read the connection's bytes and handle every complete reply in them."""
        reader = hiredis.Reader()
        silence = self._settings.health_check_interval or None
        pinged = False
        while True:
            try:
                async with asyncio.timeout(silence):
                    data = await stream.read(_READ_SIZE)
            except TimeoutError:
                if pinged:
                    raise RedisConnectionError(
                        f"no reply to PING within {silence} s on the result listener"
                    ) from None
                await pubsub.ping()
                pinged = True
                continue
            if not data:
                raise RedisConnectionError("the server closed the result listener's connection")
            pinged = False
            # Fed a slice at a time: hiredis moves what is left of its buffer to the front
            # every 1 KiB of replies it returns, so a 64 KiB read fed whole is moved ~64
            # times (~2 MiB of copying); in slices of _FEED_SIZE, a few KiB each time.
            size = len(data)
            for offset in range(0, size, _FEED_SIZE):
                reader.feed(data, offset, min(_FEED_SIZE, size - offset))
                while (reply := reader.gets()) is not False:
                    self._on_reply(reply, backoff)

    async def _read_parsed(self, pubsub: PubSub, backoff: Backoff) -> None:
        """Read replies one at a time through redis-py (health checks included)."""
        while True:
            reply = await pubsub.parse_response(block=False, timeout=_LISTEN_SECONDS)
            if reply:
                self._on_reply(reply, backoff)

    def _on_reply(self, reply: Any, backoff: Backoff) -> None:
        """Handle one pub/sub reply: a notification, or a subscription confirmation."""
        if isinstance(reply, Exception):  # an error reply: the connection is not usable
            raise RedisConnectionError(f"result listener got an error reply: {reply}")
        kind = reply[0]
        if kind == b"message":
            self._on_message(reply[2])
        elif kind == b"subscribe":
            if backoff.failures:
                log.info("result listener re-subscribed to %s", self._settings.display_url)
            backoff.reset()
            self._check_all()  # anything published while unsubscribed: read again
