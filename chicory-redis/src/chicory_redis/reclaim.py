"""Taking over entries nobody is working on: reclaiming, recovering, forgetting members.

One :class:`Reclaimer` serves one :class:`~chicory_redis.consumer.RedisConsumer` (its ledger,
queues and name), and runs from its fetches:

* :meth:`Reclaimer.reclaim`: entries other consumers left idle for longer than
  ``lease_seconds`` (``XPENDING ... IDLE`` then ``XCLAIM`` with the same minimum idle time,
  so two consumers reclaiming at once never both get an entry); logged and counted in
  :attr:`~chicory_redis.broker.RedisBroker.reclaimed_total`;
* :meth:`Reclaimer.recover_unseen`: after a read of this consumer failed, the entries that
  read left pending under its name without anyone seeing them;
* :meth:`Reclaimer.forget_idle`: group members with nothing pending that have read or
  claimed nothing for ``idle_consumer_ttl`` (the names killed workers leave behind);
* :meth:`Reclaimer.hand_back_unseen`: on close, after a cancelled read, what it left
  pending goes back to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors

from chicory_redis import scripts
from chicory_redis.connection import CONNECTION_ERRORS
from chicory_redis.delivery import RedisDelivery
from chicory_redis.entries import StoredMessage, message_from_entry
from chicory_redis.keys import QueueKeys
from chicory_redis.ledger import Ledger

if TYPE_CHECKING:
    from chicory_redis.broker import RedisBroker

__all__ = ["Reclaimer"]

log = logging.getLogger("chicory.redis")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Reclaimer:
    """Takes over entries for one consumer; see the module docstring.

    Args:
        broker: The connected broker.
        ledger: The consumer's ledger (what it holds).
        keys: The consumer's queues (their streams; the consumer adds priority levels'
            streams to :attr:`streams` as it learns of them).
        prefetch: The consumer's prefetch (the most entries it may hold).
    """

    def __init__(
        self, broker: RedisBroker, ledger: Ledger, keys: Sequence[QueueKeys], prefetch: int
    ) -> None:
        self._broker = broker
        self._settings = broker.settings
        self._ledger = ledger
        self.streams: Sequence[QueueKeys] = keys
        """The streams to look at: every priority level of the consumer's queues."""
        self._prefetch = prefetch
        self.name = ledger.name

    async def reclaim(self, room: int) -> list[RedisDelivery]:
        client, settings = self._broker.client, self._settings
        lease_ms = max(1, int(settings.lease_seconds * 1000))
        found: list[RedisDelivery] = []
        for k in self.streams:
            want = room - len(found)
            if want <= 0:
                break
            idle: Any = await client.xpending_range(
                k.stream, k.group, "-", "+", want, idle=lease_ms
            )
            if not idle:
                continue
            times = {_text(p["message_id"]): int(p["times_delivered"]) for p in idle}
            claimed: Any = await client.xclaim(k.stream, k.group, self.name, lease_ms, list(times))
            admitted: list[tuple[StoredMessage, int]] = []
            for entry_id, fields in claimed:
                if fields is None:
                    continue
                message = message_from_entry(entry_id, fields)
                self._ledger.expire(k.stream, message.entry_id)
                count = message.prior + times.get(message.entry_id, 0) + 1
                admitted.append((message, count))
            if admitted:
                self._broker.note_reclaimed(k.queue, len(admitted))
                log.warning(
                    "reclaimed %d message(s) of queue %r left idle over %.1f s by a dead or "
                    "stalled consumer: %s",
                    len(admitted),
                    k.queue,
                    settings.lease_seconds,
                    ", ".join(m.message_id for m, _ in admitted[:10]),
                )
                found.extend(await self._ledger.admit(k, admitted))
        return found

    async def recover_unseen(self, room: int) -> list[RedisDelivery]:
        """Take back the entries a failed read left pending for this consumer, unseen.

        A read whose reply was lost (the connection dropped, or timed out on a hung server
        that ran the read when it resumed) leaves what Redis handed out pending under this
        consumer's name, where nobody would look before its lease ran out. Anything pending
        for this consumer that its ledger does not hold is such an entry: it is claimed
        again (``XCLAIM`` with no minimum idle time, counted as a delivery) and returned.
        """
        client, ledger = self._broker.client, self._ledger
        found: list[RedisDelivery] = []
        for k in self.streams:
            want = room - len(found)
            if want <= 0:
                break
            pending: Any = await client.xpending_range(
                k.stream, k.group, "-", "+", self._prefetch + want, consumername=self.name
            )
            times = {
                entry_id: int(p["times_delivered"])
                for p in pending
                if (k.stream, entry_id := _text(p["message_id"])) not in ledger.held
                and (k.stream, entry_id) not in ledger.lapsed
            }
            if not times:
                continue
            ids: list[Any] = list(times)[:want]
            claimed: Any = await client.xclaim(k.stream, k.group, self.name, 0, ids)
            batch = [
                (message, message.prior + times.get(message.entry_id, 0) + 1)
                for message in (message_from_entry(e, f) for e, f in claimed if f is not None)
            ]
            if batch:
                log.warning(
                    "took back %d message(s) of queue %r that a failed read had left pending "
                    "for this consumer, unseen",
                    len(batch),
                    k.queue,
                )
                found.extend(await ledger.admit(k, batch))
        return found

    async def forget_idle(self, ttl: float) -> None:
        """Delete the group members killed workers left behind (see ``idle_consumer_ttl``).

        A refusal (say, an ACL without ``XGROUP DELCONSUMER``) is logged and fetching goes
        on; connection errors propagate to the fetch's retry loop.
        """
        ttl_ms = max(1, int(ttl * 1000))
        calls = [
            scripts.Call(scripts.FORGET_IDLE, (k.stream,), (k.group, ttl_ms, self.name))
            for k in self.streams
        ]
        results = await scripts.run_many(self._broker.client, calls)
        for k, result in zip(self.streams, results, strict=True):
            if isinstance(result, CONNECTION_ERRORS):
                raise result
            if isinstance(result, Exception):
                log.warning(
                    "could not remove idle consumers from queue %r's group: %s", k.queue, result
                )
            elif result:
                names = [_text(name) for name in result]
                log.info(
                    "removed %d consumer(s) from queue %r's group, idle over %.0f s with "
                    "nothing pending (left by workers that did not close): %s",
                    len(names),
                    k.queue,
                    ttl,
                    ", ".join(names[:10]),
                )

    async def hand_back_unseen(self) -> None:
        """Give back the entries pending for this consumer that no fetch returned.

        Called on close, after the held deliveries went back, and only if a fetch was
        cancelled: then whatever is still pending for this consumer's name was read by that
        fetch and never seen by anyone, so it goes back with its delivery uncounted.
        """
        client = self._broker.client
        for k in self.streams:
            try:
                pending: Any = await client.xpending_range(
                    k.stream, k.group, "-", "+", self._prefetch, consumername=self.name
                )
            except redis_errors.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the queue was deleted: nothing to give back
                    continue
                raise
            ids: list[Any] = [_text(p["message_id"]) for p in pending]
            if not ids:
                continue
            claimed: Any = await client.xclaim(k.stream, k.group, self.name, 0, ids)
            batch = [
                (message, message.prior)
                for message in (message_from_entry(e, f) for e, f in claimed if f is not None)
            ]
            if batch:
                log.info(
                    "handing back %d message(s) of queue %r read by a cancelled fetch",
                    len(batch),
                    k.queue,
                )
                await self._ledger.admit(k, batch)  # the ledger is closed: it gives them back
