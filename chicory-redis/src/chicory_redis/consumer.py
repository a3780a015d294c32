"""The Redis broker's :class:`~chicory.broker.Consumer`: fetching, reclaiming, handing back.

What a consumer holds and how it is settled lives in :mod:`chicory_redis.ledger`; taking
over entries nobody works on (reclaim, recovery after a failed read, forgetting dead
members) in :mod:`chicory_redis.reclaim`; its groups, presence, moving due messages and
learning its queues' priority levels in :mod:`chicory_redis.upkeep`; reading a queue with
priorities, highest level first, in :mod:`chicory_redis.levels`.

One consumer is one named member of each queue's consumer group. A fetch, in order:

1. moves due delayed messages into the streams (the ``move_due`` script, at most every
   ``delayed_poll_interval`` and sooner when the next due time is known), so a delayed
   message never waits in anyone's prefetch buffer; its reply names the queues' priority
   levels, which the consumer reads from then on;
2. after a read failed (the connection dropped or timed out), takes back what that read
   left pending for this consumer, unseen (three passes a second apart: a hung server may
   run the read when it resumes), instead of leaving it for its lease to run out;
3. every ``reclaim_interval``, reclaims entries that other consumers left idle for longer
   than ``lease_seconds`` (``XPENDING ... IDLE`` then ``XCLAIM`` with the same minimum idle
   time, so two consumers reclaiming at once never both get an entry); every reclaim is
   logged and counted in :attr:`RedisBroker.reclaimed_total`;
4. at most once a minute (sooner if ``idle_consumer_ttl`` is shorter), deletes from each
   queue's group the members with nothing pending that have read or claimed nothing for
   ``idle_consumer_ttl``: the names killed workers leave behind, which would otherwise pile up
   over restarts (the ``forget_idle`` script checks and deletes in one step, so no pending
   entry is ever deleted with a consumer; a live consumer deleted while idle is recreated by
   its next read);
5. reads new entries with ``XREADGROUP ... COUNT <free room> BLOCK <ms>``, the block bounded
   by the fetch timeout, ``block_ms`` and the next maintenance time.

Connection errors during a fetch are logged with the redacted URL and retried after a capped
exponential pause (with jitter) until the fetch times out; settle calls raise
:class:`~chicory.errors.BrokerConnectionError` instead, leaving the delivery unsettled (the
worker sends them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from redis import exceptions as redis_errors

from chicory.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
)
from chicory_redis.connection import CONNECTION_ERRORS, Backoff, auth_message, is_auth_error
from chicory_redis.delivery import DeliveryState, RedisDelivery
from chicory_redis.entries import StoredMessage, message_from_fields
from chicory_redis.ledger import Ledger
from chicory_redis.reclaim import Reclaimer
from chicory_redis.upkeep import Upkeep

if TYPE_CHECKING:
    from chicory_redis.broker import RedisBroker

__all__ = ["RedisConsumer"]

log = logging.getLogger("chicory.redis")

_UNSEEN_CHECKS = 3  # passes, after a failed read, that look for entries it left pending
_UNSEEN_SPACING = 1.0  # seconds between them (a hung server may run the read late)
_FORGET_INTERVAL = 60.0  # seconds between passes that delete long-idle group members


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisConsumer:
    """A consumer of one or more Redis queues; see :class:`chicory.broker.Consumer`.

    Args:
        broker: The connected broker that opened it.
        queues: The queues to consume (duplicates ignored).
        prefetch: The most unsettled deliveries it may hold at once.

    Raises:
        ConfigurationError: no queues, or ``prefetch`` below 1.
    """

    def __init__(self, broker: RedisBroker, queues: Sequence[str], prefetch: int) -> None:
        if not queues:
            raise ConfigurationError("consume() needs at least one queue name")
        if prefetch < 1:
            raise ConfigurationError(f"prefetch must be at least 1, got {prefetch}")
        self._broker = broker
        self._settings = broker.settings
        self._keys = [broker.keys.queue(name) for name in dict.fromkeys(queues)]
        self._by_stream = {k.stream: k for k in self._keys}
        self._prefetch = prefetch
        self.name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._ledger = Ledger(broker, self.name, self._keys)
        self._reclaimer = Reclaimer(broker, self._ledger, self._keys, prefetch)
        self._upkeep = Upkeep(broker, self._keys, self._ledger, self._reclaimer, self._by_stream)
        self._levels = self._upkeep.levels
        self._hand_back: asyncio.Future[None] | None = None  # kept alive if close is cancelled
        self._cancelled_read = False  # a read may have left entries pending, unseen
        self._unseen_checks = 0  # after a failed read: passes left that look for what it read
        self._next_unseen_check = 0.0
        self._groups_ready = False
        self._next_move = 0.0
        self._next_reclaim = 0.0
        self._next_forget = 0.0
        self._rotation = 0
        self._backoff = Backoff(
            self._settings.reconnect_backoff, self._settings.reconnect_backoff_max
        )

    def __repr__(self) -> str:
        names = ", ".join(k.queue for k in self._keys)
        state = "closed" if self._stopped() else f"holding {self.held}"
        return f"<RedisConsumer {self.name} [{names}] prefetch={self._prefetch} {state}>"

    @property
    def closed(self) -> bool:
        """Whether the consumer was closed (by itself or by its broker)."""
        return self._stopped()

    @property
    def held(self) -> int:
        """How many unsettled deliveries count against the prefetch (lapsed ones do not)."""
        return len(self._ledger.held)

    def _stopped(self) -> bool:
        return self._ledger.closed  # a method: it changes across awaits

    # -- fetching --------------------------------------------------------------------------

    async def fetch(self, max_count: int, timeout: float) -> Sequence[RedisDelivery]:
        """Return up to ``max_count`` ready deliveries, waiting up to ``timeout`` seconds.

        Never returns more than the free prefetch room. Returns an empty list on timeout,
        when Redis stays unreachable until the timeout, or if the consumer is closed while
        waiting. Cancellation-safe: entries Redis handed to a fetch cancelled before it read
        the reply stay pending for this consumer; :meth:`close` hands them back (uncounted),
        or, if it never runs, they are reclaimed after ``lease_seconds``.

        Raises:
            BrokerError: the consumer was already closed, or Redis refused a command.
        """
        if self._stopped():
            raise BrokerError("this Redis consumer is closed; open a new one with consume()")
        loop = asyncio.get_running_loop()
        end = loop.time() + max(timeout, 0.0)
        while max_count >= 1 and not self._stopped():
            self._ledger.sweep()
            room = min(max_count, self._prefetch - self.held)
            if room <= 0:
                if not await self._wait_for_room(end - loop.time()):
                    return []
                continue
            try:
                found = await self._poll(room, end - loop.time())
            except asyncio.CancelledError:
                self._cancelled_read = True
                raise
            except (*CONNECTION_ERRORS, BrokerConnectionError, BrokerAuthenticationError) as exc:
                self._unseen_checks = _UNSEEN_CHECKS
                if self._stopped() or not await self._pause_after(exc, end - loop.time()):
                    return []
                continue
            except redis_errors.ResponseError as exc:
                if "NOGROUP" not in str(exc) or loop.time() >= end:
                    raise BrokerError(
                        f"fetch failed on Redis at {self._broker.display_url}: {exc}"
                    ) from exc
                log.warning("consumer group missing (server restarted empty?); recreating it")
                self._groups_ready = False
                continue
            if self._backoff.failures:
                log.info("Redis at %s reachable again", self._broker.display_url)
                self._backoff.reset()
            if found or loop.time() >= end:
                return found
        return []  # closed while waiting (for example by broker.close())

    async def _wait_for_room(self, remaining: float) -> bool:
        """Wait for a settle or a lapsing lease to free prefetch room; False on timeout."""
        if remaining <= 0:
            return False
        ledger = self._ledger
        lapse = ledger.next_lapse()
        if lapse is not None:
            remaining = min(remaining, max(lapse - time.monotonic(), 0.001))
        ledger.freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await ledger.freed.wait()
        return True

    async def _pause_after(self, exc: Exception, remaining: float) -> bool:
        """Log a connection failure and back off; False if the fetch timed out meanwhile."""
        pause = self._backoff.next_pause()
        if is_auth_error(exc) or isinstance(exc, BrokerAuthenticationError):
            log.error("%s; retrying in %.2f s", auth_message(self._broker.display_url, exc), pause)
        else:
            log.warning(
                "Redis at %s unreachable while fetching (%s: %s); retrying in %.2f s",
                self._broker.display_url,
                type(exc).__name__,
                exc,
                pause,
            )
        if remaining <= 0:
            return False
        await asyncio.sleep(min(pause, remaining))
        return True

    async def _poll(self, room: int, remaining: float) -> list[RedisDelivery]:
        loop = asyncio.get_running_loop()
        if not self._groups_ready:
            if await self._upkeep.join():  # levels to learn again at once
                self._next_move = 0.0
            self._groups_ready = True
        if self._ledger.new_levels:
            await self._upkeep.learn_requeued()
        due = self._ledger.soonest_due
        if due is not None:
            self._ledger.soonest_due = None
            self._next_move = min(self._next_move, loop.time() + due - self._ledger.now())
        if loop.time() >= self._next_move:
            self._next_move = await self._upkeep.move_due(loop.time())
        if self._unseen_checks and loop.time() >= self._next_unseen_check:
            found = await self._reclaimer.recover_unseen(room)
            self._unseen_checks -= 1
            self._next_unseen_check = loop.time() + _UNSEEN_SPACING
            if found:
                return found
        if loop.time() >= self._next_reclaim:
            self._next_reclaim = loop.time() + self._settings.reclaim_interval
            await self._upkeep.announce()
            reclaimed = await self._reclaimer.reclaim(room)
            if reclaimed:
                return reclaimed
        ttl = self._settings.idle_consumer_ttl
        if ttl is not None and loop.time() >= self._next_forget:
            self._next_forget = loop.time() + min(_FORGET_INTERVAL, ttl)
            await self._reclaimer.forget_idle(ttl)
        now = loop.time()
        wait = min(
            remaining,
            self._settings.block_ms / 1000,
            self._next_move - now,
            self._next_reclaim - now,
        )
        return await self._read(room, int(wait * 1000) if wait >= 0.001 else None)

    async def _xreadgroup(self, streams: Sequence[str], count: int, block_ms: int | None) -> Any:
        """``XREADGROUP ... >`` as Redis replies (the client leaves this reply unparsed)."""
        pieces: list[Any] = ["XREADGROUP", "GROUP", self._keys[0].group, self.name]
        pieces += ("COUNT", count)
        if block_ms is not None:
            pieces += ("BLOCK", block_ms)
        pieces.append("STREAMS")
        pieces += streams
        pieces += (">",) * len(streams)
        return await self._broker.client.execute_command(*pieces)  # type: ignore[no-untyped-call]

    async def _read(self, room: int, block_ms: int | None) -> list[RedisDelivery]:
        keys, levels = self._keys, self._levels
        if len(keys) == 1 and not levels.any:
            return await self._accept(await self._xreadgroup((keys[0].stream,), room, block_ms))
        found: list[RedisDelivery] = []
        size = len(keys)
        for offset in range(size):
            want = room - len(found)
            if want <= 0:
                break
            k = keys[(self._rotation + offset) % size]
            ranked = levels.ranked(k.queue)
            if ranked is None:
                response = await self._xreadgroup((k.stream,), want, None)
            else:  # highest level first, in one round trip
                response = await levels.read(self._broker.client, ranked, want)
            found.extend(await self._accept(response))
        self._rotation = (self._rotation + 1) % size
        if found or block_ms is None:
            return found
        # Nothing anywhere: block on every stream at once (one queue: for the free room;
        # several: one entry per stream at most).
        streams = [k.stream for k in levels.streams]
        response = await self._xreadgroup(streams, room if size == 1 else 1, block_ms)
        got = await self._accept(response)
        if len(got) > room:
            await self._ledger.give_back(got[room:], recount=False)
            got = got[:room]
        return got

    async def _accept(self, response: Any) -> list[RedisDelivery]:
        """Hold the entries of an ``XREADGROUP`` reply: a map (or, from some servers and
        protocol versions, a list of pairs) of stream name to entries."""
        if not response:
            return []
        found: list[RedisDelivery] = []
        for stream_name, entries in response.items() if isinstance(response, dict) else response:
            k = self._by_stream[_text(stream_name)]
            batch: list[tuple[StoredMessage, int]] = []
            for eid, fields in entries:
                message = message_from_fields(eid, fields)
                if message is not None:
                    batch.append((message, message.prior + 1))
            found.extend(await self._ledger.admit(k, batch))
        return found

    async def _hand_back_all(self, held: list[RedisDelivery]) -> None:
        try:
            if held:
                await self._ledger.give_back(held, recount=True)
            if self._cancelled_read:
                await self._reclaimer.hand_back_unseen()
            await self._upkeep.leave()
        except (*CONNECTION_ERRORS, redis_errors.RedisError) as exc:
            log.warning(
                "could not hand %d message(s) back to Redis at %s (%s); they will be "
                "redelivered after lease_seconds=%.1f",
                len(held),
                self._broker.display_url,
                exc,
                self._settings.lease_seconds,
            )

    async def close(self) -> None:
        """Stop consuming and hand unsettled deliveries back (ready again at once).

        Idempotent. The hand-back runs to completion even if ``close`` is cancelled; if
        Redis is unreachable, the entries are redelivered after ``lease_seconds`` instead.
        """
        ledger = self._ledger
        if ledger.closed:
            return
        ledger.closed = True
        held = ledger.all_held()
        for d in held:  # from now on, settling them raises DeliveryStateError
            ledger.release(d, DeliveryState.HANDED_BACK)
        self._broker.forget(self)
        if self._broker.client_or_none is not None:
            self._hand_back = asyncio.ensure_future(self._hand_back_all(held))
            await asyncio.shield(self._hand_back)

    async def ack_many(self, deliveries: Sequence[object]) -> list[RedisDelivery]:
        """Ack several deliveries in one round trip (one atomic script per queue).

        Returns:
            Those not acked because their lease lapsed and a consumer reclaimed their entry
            (or one was marked expired before): they are delivered again elsewhere.

        Raises:
            DeliveryStateError: a delivery belongs to another consumer, or was handed back
                by closing this one (nothing is acked).
            BrokerConnectionError: Redis could not be reached; nothing was acked.
        """
        return await self._ledger.ack_many(deliveries)

    async def extend_leases(self, deliveries: Sequence[object]) -> None:
        """Renew the leases of held deliveries in one round trip (``XCLAIM ... JUSTID``).

        A delivery whose entry another consumer reclaimed is marked expired and logged.

        Raises:
            DeliveryStateError: a delivery belongs to another consumer.
            BrokerConnectionError: Redis could not be reached; nothing was renewed.
        """
        await self._ledger.extend_leases(deliveries)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
