"""How one Redis consumer settles what it holds: one atomic script per step.

A :class:`Ledger` belongs to one :class:`~chicory_redis.consumer.RedisConsumer`. It keeps the
unsettled deliveries (:mod:`chicory_redis.holdings`) and runs the settle scripts of
:mod:`chicory_redis.scripts`: ``ack`` (batched per queue), ``requeue`` (nack, retry,
hand-back), ``dead_letter`` and ``renew`` (lease extension, batched per queue). Every script
checks that the entry is still pending for this consumer before acting, so a consumer whose
entry was reclaimed by another can no longer touch it.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections.abc import Sequence
from typing import Any

from chicory.errors import BrokerError
from chicory_redis import scripts
from chicory_redis.connection import broker_errors
from chicory_redis.delivery import DeliveryState, RedisDelivery
from chicory_redis.entries import StoredMessage
from chicory_redis.holdings import Holdings
from chicory_redis.keys import QueueKeys

__all__ = ["Ledger"]

log = logging.getLogger("chicory.redis")

_SCRIPT_IDS = 500  # entry ids per ack/renew script call
_ORDINAL = operator.attrgetter("ordinal")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Ledger(Holdings):
    """The deliveries one consumer holds (:class:`Holdings`) and how they are settled.

    Args:
        broker: The connected broker.
        name: The consumer's name in the consumer groups.
        queues: The keys of the consumer's queues.
    """

    async def admit(
        self, k: QueueKeys, batch: list[tuple[StoredMessage, int]]
    ) -> list[RedisDelivery]:
        """Hold the claimed messages, dead-lettering those over ``max_deliveries``."""
        limit = self._settings.max_deliveries
        deadline = time.monotonic() + self._settings.lease_seconds
        kept: list[RedisDelivery] = []
        over: list[RedisDelivery] = []
        ordinal = self._admitted
        for message, count in batch:
            d = RedisDelivery(self, k, message, count, deadline, ordinal)
            ordinal += 1
            (over if limit is not None and count > limit else kept).append(d)
        self._admitted = ordinal
        for d in over:
            await self.dead_letter_call(
                d,
                d.entry_id,
                f"delivered {d.count - 1} times without being settled (max_deliveries={limit})",
                count=d.count - 1,
            )
            d.state = DeliveryState.SETTLED
        held = self.held
        for d in kept:
            held[d.key] = d
        if self.closed and kept:
            await self.give_back(kept, recount=False)
            return []
        return kept

    def _requeue_call(
        self,
        delivery: RedisDelivery,
        *,
        due: str,
        message_id: str,
        prior: int,
        raw_headers: str,
        body: bytes,
        check_limit: bool,
        target: QueueKeys | None = None,
    ) -> scripts.Call:
        k, limit = delivery.keys, self._settings.max_deliveries
        keys: tuple[str, ...] = (k.stream, k.delayed, k.dead)
        extra: tuple[str, ...] = ()
        if target is not None and target.stream != k.stream:  # another priority's stream
            keys += (target.stream, target.levels) if target.level else (target.stream,)
            extra = (str(target.level),) if target.level else ()
        return scripts.Call(
            scripts.REQUEUE,
            keys,
            (
                k.group,
                self.name,
                delivery.entry_id,
                due,
                str(limit) if check_limit and limit is not None else "",
                math.floor(self.now() * 1000),
                message_id,
                str(prior),
                raw_headers,
                body,
                *self._settings.dead_letter_limits(),
                *extra,
            ),
        )

    async def requeue(
        self,
        delivery: RedisDelivery,
        *,
        due: str,
        message_id: str,
        prior: int,
        raw_headers: str,
        body: bytes,
        check_limit: bool,
        target: QueueKeys | None = None,
    ) -> None:
        """Settle ``delivery`` and publish a message in its place (``requeue`` script).

        Args:
            delivery: The held delivery.
            due: ``""`` for ready now, a due time in ms for delayed, ``"-"`` to drop.
            message_id: Id of the message published in its place.
            prior: Deliveries counted for that message so far.
            raw_headers: Its headers as JSON.
            body: Its body.
            check_limit: Dead-letter instead when ``prior`` reaches ``max_deliveries``.
            target: The keys of the priority level the message goes to when ready now, if
                not the delivery's own.

        Raises:
            BrokerConnectionError: Redis could not be reached; nothing happened.
        """
        call = self._requeue_call(
            delivery,
            due=due,
            message_id=message_id,
            prior=prior,
            raw_headers=raw_headers,
            body=body,
            check_limit=check_limit,
            target=target,
        )
        with broker_errors(self._broker.display_url, f"settle message {delivery.message_id}"):
            result = await scripts.run(self._broker.client, call.script, call.keys, call.args)
        self.release(delivery, DeliveryState.SETTLED if result else DeliveryState.EXPIRED)
        if result and due == "" and target is not None and target.stream not in self._by_stream:
            self.new_levels.append(target)
        if result and due not in ("", "-"):
            # A message delayed a short while (a retry's backoff, a rate-limited turn) is
            # moved on time by this consumer, not at its next regular poll.
            at = int(due) / 1000
            if self.soonest_due is None or at < self.soonest_due:
                self.soonest_due = at

    async def dead_letter_call(
        self, delivery: RedisDelivery, entry_id: str, reason: str, *, count: int
    ) -> Any:
        """Run the ``dead_letter`` script (``entry_id=""`` records a copy only).

        Moving an entry is safe to repeat (the script checks it is still this consumer's);
        recording a copy is not, so a copy is sent once (:mod:`chicory_redis.sending`).

        Returns:
            The dead letter's id, or ``None`` if the entry is no longer this consumer's.

        Raises:
            BrokerConnectionError: Redis could not be reached; nothing happened.
            PublishOutcomeUnknownError: a copy may or may not have been recorded.
        """
        k, message = delivery.keys, delivery.message
        args = (
            k.group,
            self.name,
            entry_id,
            message.message_id,
            str(count),
            message.raw_headers,
            message.body,
            reason,
            math.floor(self.now() * 1000),
            *self._settings.dead_letter_limits(),
        )
        what = f"dead-letter message {message.message_id}"
        if not entry_id:
            call = scripts.Call(scripts.DEAD_LETTER, (k.stream, k.dead), args)
            return (await self._broker.send([call.command()], what))[0]
        with broker_errors(self._broker.display_url, what):
            return await scripts.run(
                self._broker.client, scripts.DEAD_LETTER, (k.stream, k.dead), args
            )

    async def bury(self, delivery: RedisDelivery, reason: str) -> None:
        """Dead-letter ``delivery`` (a copy if it was acked already)."""
        if delivery.state is DeliveryState.ACKED:
            await self.dead_letter_call(delivery, "", reason, count=delivery.count)
            delivery.state = DeliveryState.SETTLED
            return
        if not self.may_settle(delivery):
            return
        result = await self.dead_letter_call(
            delivery, delivery.entry_id, reason, count=delivery.count
        )
        self.release(delivery, DeliveryState.SETTLED if result else DeliveryState.EXPIRED)

    async def ack_many(self, deliveries: Sequence[object]) -> list[RedisDelivery]:
        """Ack several deliveries in one round trip (one atomic script per queue).

        Returns:
            Those not acked because their entry is no longer pending for this consumer
            (its lease lapsed and a consumer reclaimed it) or was marked expired before.

        Raises:
            DeliveryStateError: a delivery belongs to another consumer, or was handed back
                by closing this one (nothing is acked).
            BrokerConnectionError: Redis could not be reached; nothing was acked.
        """
        targets: list[RedisDelivery] = []
        lost: list[RedisDelivery] = []
        for item in deliveries:
            # own(), inlined for the common case: this runs once per task
            d = item if type(item) is RedisDelivery and item.ledger is self else self.own(item)
            if d.state is DeliveryState.HELD or self.may_settle(d):
                targets.append(d)
            elif d.state is DeliveryState.EXPIRED:
                lost.append(d)
        chunks = self._by_queue(targets)
        calls = [
            scripts.Call(
                scripts.ACK,
                (k.stream,),
                (
                    k.group,
                    self.name,
                    # Entries read with XREADGROUP '>' come in entry id order, so the first
                    # and last admitted bound the others: the script's range (a hint only).
                    min(c, key=_ORDINAL).entry_id,
                    max(c, key=_ORDINAL).entry_id,
                    " ".join([d.message.entry_id for d in c]),
                ),
            )
            for k, c in chunks
        ]
        with broker_errors(self._broker.display_url, "ack"):
            results = await scripts.run_many(self._broker.client, calls)
        failed = None
        for (_, chunk), result in zip(chunks, results, strict=True):
            if isinstance(result, Exception):
                failed = result
                continue
            if result:  # entry ids no longer ours
                gone = {_text(entry_id) for entry_id in result}
                expired = [d for d in chunk if d.message.entry_id in gone]
                self.release_many(expired, DeliveryState.EXPIRED)
                lost += expired
                chunk = [d for d in chunk if d.message.entry_id not in gone]
            self.release_many(chunk, DeliveryState.ACKED)
        if failed is not None:
            raise BrokerError(f"ack failed on Redis at {self._broker.display_url}: {failed}")
        return lost

    async def extend_leases(self, deliveries: Sequence[object]) -> None:
        """Renew the leases of held deliveries in one round trip (``XCLAIM ... JUSTID``).

        A delivery whose entry another consumer reclaimed is marked expired and logged.

        Raises:
            DeliveryStateError: a delivery belongs to another consumer.
            BrokerConnectionError: Redis could not be reached; nothing was renewed.
        """
        owned = [self.own(d) for d in deliveries]
        chunks = self._by_queue([d for d in owned if d.state is DeliveryState.HELD])
        calls = [
            scripts.Call(
                scripts.RENEW,
                (k.stream,),
                (k.group, self.name, " ".join([d.message.entry_id for d in c])),
            )
            for k, c in chunks
        ]
        started = time.monotonic()
        with broker_errors(self._broker.display_url, "renew leases"):
            results = await scripts.run_many(self._broker.client, calls)
        deadline = started + self._settings.lease_seconds
        for (k, chunk), result in zip(chunks, results, strict=True):
            if isinstance(result, Exception):
                raise BrokerError(f"lease renewal failed on Redis: {result}")
            renewed = {_text(entry_id) for entry_id in result}
            for d in chunk:
                if d.entry_id in renewed and d.state is DeliveryState.HELD:
                    d.deadline = deadline
                    if self.lapsed.get(d.key) is d:  # renewed in time after all: counts again
                        self.held[d.key] = self.lapsed.pop(d.key)
                elif d.state is DeliveryState.HELD:
                    log.warning(
                        "lease of message %s (queue %r) was lost: another consumer reclaimed "
                        "it after %.1f s idle; renew leases more often than lease_seconds",
                        d.message_id,
                        k.queue,
                        self._settings.lease_seconds,
                    )
                    self.release(d, DeliveryState.EXPIRED)

    def _by_queue(
        self, deliveries: Sequence[RedisDelivery]
    ) -> list[tuple[QueueKeys, list[RedisDelivery]]]:
        if len(self._by_stream) == 1:  # one queue: nothing to group
            (k,) = self._by_stream.values()
            items = list(deliveries)
            return [(k, items[i : i + _SCRIPT_IDS]) for i in range(0, len(items), _SCRIPT_IDS)]
        grouped: dict[str, list[RedisDelivery]] = {}
        for d in deliveries:
            grouped.setdefault(d.keys.stream, []).append(d)
        return [
            (self._by_stream[stream], items[i : i + _SCRIPT_IDS])
            for stream, items in grouped.items()
            for i in range(0, len(items), _SCRIPT_IDS)
        ]

    async def give_back(self, deliveries: Sequence[RedisDelivery], *, recount: bool) -> None:
        """Re-add entries at the back of their queues now, settling the originals.

        Args:
            deliveries: Held deliveries, in the order they should be delivered again.
            recount: Count the delivery just made (a hand-back on close); ``False`` for
                entries read but never handed to the caller.

        Raises:
            redis.exceptions.RedisError: a script failed; the rest may have run.
        """
        calls = [
            self._requeue_call(
                d,
                due="",
                message_id=d.message_id,
                prior=d.count if recount else d.message.prior,
                raw_headers=d.message.raw_headers,
                body=d.body,
                check_limit=recount,
            )
            for d in deliveries
        ]
        for d in deliveries:
            self.release(d, DeliveryState.HANDED_BACK)
            d.state = DeliveryState.HANDED_BACK
        results = await scripts.run_many(self._broker.client, calls)
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise errors[0]
