"""What a Redis consumer keeps up besides reading: its groups, its presence, due delayed
messages and the priority levels of its queues.

One :class:`Upkeep` serves one :class:`~chicory_redis.consumer.RedisConsumer`, which decides
when each step runs (see its module docstring):

* :meth:`Upkeep.join`: the consumer group on each queue's stream (made from the first entry,
  so nothing sent before is skipped), the queue registry and the consumer's presence;
* :meth:`Upkeep.announce`: renew the consumer's presence in each queue's presence set (what
  ``queue_stats`` counts as consumers) and drop the presences that expired;
* :meth:`Upkeep.move_due`: the ``move_due`` script per queue, which moves due delayed
  messages to their priority's stream and names the queue's priority levels, learnt with
  :meth:`Upkeep.learn` (:mod:`chicory_redis.levels`);
* :meth:`Upkeep.leave`: on close, leave the groups where nothing is pending for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from chicory_redis import scripts
from chicory_redis.inspect import presence_seconds
from chicory_redis.keys import QueueKeys
from chicory_redis.ledger import Ledger
from chicory_redis.levels import Levels
from chicory_redis.reclaim import Reclaimer

if TYPE_CHECKING:
    from chicory_redis.broker import RedisBroker

__all__ = ["MOVE_BATCH", "Upkeep"]

MOVE_BATCH: Final = 1000
"""Most due delayed messages one ``move_due`` call moves per queue."""


class Upkeep:
    """The upkeep of one consumer (see the module docstring).

    Args:
        broker: The connected broker.
        keys: The consumer's queues.
        ledger: The consumer's ledger.
        reclaimer: The consumer's reclaimer (told of every stream the consumer reads).
        by_stream: The consumer's map of stream name to keys (levels are added to it).
    """

    def __init__(
        self,
        broker: RedisBroker,
        keys: Sequence[QueueKeys],
        ledger: Ledger,
        reclaimer: Reclaimer,
        by_stream: dict[str, QueueKeys],
    ) -> None:
        self._broker = broker
        self._settings = broker.settings
        self._keys = keys
        self._ledger = ledger
        self._reclaimer = reclaimer
        self._by_stream = by_stream
        self.name = ledger.name
        self.levels = Levels(keys, keys[0].group, self.name)
        """The priority levels of the consumer's queues, and reading them."""

    async def join(self) -> bool:
        """Make sure the groups exist, register the queues and announce the consumer.

        Returns:
            True if levels were known before (the groups were lost): they are forgotten,
            to be learnt again at the next :meth:`move_due`, which should come at once.
        """
        client = self._broker.client
        pipe = client.pipeline(transaction=False)
        for k in self._keys:
            pipe.xgroup_create(k.stream, k.group, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        await self._broker.register_queues([k.queue for k in self._keys])
        await self.announce()
        if not self.levels.any:
            return False
        self.levels.forget()
        self._reclaimer.streams = self.levels.streams
        return True

    async def announce(self) -> None:
        """Renew this consumer's presence in each queue's presence set, and drop the
        presences that expired."""
        settings = self._settings
        now_ms = int(self._ledger.now() * 1000)
        lasts = presence_seconds(settings.lease_seconds, settings.reclaim_interval)
        pipe = self._broker.client.pipeline(transaction=False)
        for k in self._keys:
            pipe.zadd(k.consumers, {self.name: now_ms + int(lasts * 1000)})
            pipe.zremrangebyscore(k.consumers, "-inf", now_ms)
        await pipe.execute()

    async def move_due(self, mono: float) -> float:
        """Move due delayed messages of every queue (one round trip) and learn of levels.

        Args:
            mono: The event loop's time now.

        Returns:
            The loop time of the next move: after ``delayed_poll_interval``, sooner when a
            delayed message falls due sooner, now when a queue had more than one batch due.
        """
        now_ms = math.floor(self._ledger.now() * 1000)
        calls = [
            scripts.Call(scripts.MOVE_DUE, (k.delayed, k.stream, k.levels), (now_ms, MOVE_BATCH))
            for k in self._keys
        ]
        next_move = mono + self._settings.delayed_poll_interval
        results = await scripts.run_many(self._broker.client, calls)
        for k, result in zip(self._keys, results, strict=True):
            if isinstance(result, Exception):
                raise result
            moved, next_due = int(result[0]), int(result[1])
            if len(result) > 2:
                await self.learn(k, result[2:])
            if moved >= MOVE_BATCH:
                next_move = mono
            elif next_due >= 0:
                next_move = min(next_move, mono + max((next_due - now_ms) / 1000, 0.001))
        return next_move

    async def learn(self, k: QueueKeys, levels: Sequence[Any]) -> None:
        """Read queue ``k`` by priority from now on, if it has levels new to this consumer."""
        added = await self.levels.learn(self._broker.client, k, levels)
        if added:
            for level_keys in added:
                self._by_stream[level_keys.stream] = level_keys
            self._ledger.add_streams(added)
            self._reclaimer.streams = self.levels.streams

    async def learn_requeued(self) -> None:
        """Learn the levels this consumer's own retries made (see ``Ledger.new_levels``)."""
        for level_keys in self._ledger.new_levels:
            await self.learn(level_keys.at_level(0), [level_keys.level])
        self._ledger.new_levels.clear()

    async def leave(self) -> None:
        """Delete this consumer from the groups where it holds nothing pending."""
        client = self._broker.client
        streams = self.levels.streams
        pipe = client.pipeline(transaction=False)
        for k in streams:
            pipe.xpending_range(k.stream, k.group, "-", "+", 1, consumername=self.name)
        pending = await pipe.execute(raise_on_error=False)
        pipe = client.pipeline(transaction=False)
        for k, entries in zip(streams, pending, strict=True):
            pipe.zrem(k.consumers, self.name)
            if entries == []:
                pipe.xgroup_delconsumer(k.stream, k.group, self.name)
        await pipe.execute(raise_on_error=False)
