"""Message priorities on Redis: one stream per priority level, read highest first.

A queue's messages of priority 0 (and those without a ``chicory-priority`` header) are in its
stream, as they always were. A message of priority 1 to 9 goes to that level's own stream
(``<p>:{q:<queue>}:stream:<n>``, in the queue's hash tag, with the same consumer group
name), made by the first message of that level, which also records the level in the
queue's ``levels`` set (:mod:`chicory_redis.keys`). Within a level, messages come in the
order they became ready.

What a queue that never had a priority pays: nothing per task. Its consumers read it with
one plain ``XREADGROUP`` as before; the only addition is one ``SMEMBERS`` inside the
``move_due`` script each consumer already runs every ``delayed_poll_interval``, which is how
consumers learn of levels. Once a consumer learns that a queue has levels, it creates its
group on their streams and reads the queue with the ``read_levels`` script: the highest
level with new entries first, then the next, in one round trip. When all are empty it blocks
with one ``XREADGROUP`` over all of the queue's streams.

Every delivery knows the stream it came from (its :class:`~chicory_redis.keys.QueueKeys`),
so acks, lease renewals, reclaims, nacks and dead letters act on that stream. Delayed
messages and delayed retries wait in the queue's one delayed set; the ``move_due`` script
moves each to its level's stream when it falls due.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from chicory.priority import PRIORITY_HEADER
from chicory_redis import scripts
from chicory_redis.keys import QueueKeys

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Levels", "level_of", "valid_levels"]

_LEVELS: Final = {str(n): n for n in range(10)}


def level_of(headers: Mapping[str, str]) -> int:
    """The priority a message with ``headers`` is served at: its ``chicory-priority``
    header, 0 without one or with one that is not a digit from 0 to 9."""
    value = headers.get(PRIORITY_HEADER)
    return 0 if value is None else _LEVELS.get(value, 0)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def valid_levels(members: Iterable[Any]) -> list[int]:
    """The priorities above 0 among the members of a queue's levels set (anything else,
    written there by something other than Chicory, is ignored)."""
    found = (_LEVELS.get(_text(member), 0) for member in members)
    return [level for level in found if level]


class Levels:
    """The priority levels of one consumer's queues: which it knows, and reading them.

    Args:
        queues: The consumer's queues (their level-0 keys).
        group: The consumer group name.
        name: The consumer's name in the group.
    """

    def __init__(self, queues: Sequence[QueueKeys], group: str, name: str) -> None:
        self._queues = list(queues)
        self._group = group
        self._name = name
        self._ranked: dict[str, list[QueueKeys]] = {}
        self.streams: list[QueueKeys] = list(queues)
        """Every stream the consumer reads: each queue's levels, highest first."""

    @property
    def any(self) -> bool:
        """Whether any of the queues has a level above 0 (else reads are plain)."""
        return bool(self._ranked)

    def ranked(self, queue: str) -> list[QueueKeys] | None:
        """The streams of ``queue`` highest level first (level 0 last), or ``None`` when
        it has no level above 0 that this consumer knows of."""
        return self._ranked.get(queue)

    def forget(self) -> None:
        """Forget every level (the groups were lost: they are learnt again)."""
        self._ranked.clear()
        self.streams = list(self._queues)

    async def learn(self, client: Redis, k: QueueKeys, levels: Iterable[Any]) -> list[QueueKeys]:
        """Take note of the levels ``move_due`` reported for queue ``k``.

        Creates the consumer group on each new level's stream first (from its first entry,
        so nothing sent before is skipped).

        Returns:
            The keys of the levels new to this consumer.
        """
        known = self._ranked.get(k.queue, [k])
        have = {x.level for x in known}
        new = sorted(set(valid_levels(levels)) - have)
        if not new:
            return []
        added = [k.at_level(level) for level in new]
        pipe = client.pipeline(transaction=False)
        for level_keys in added:
            pipe.xgroup_create(level_keys.stream, self._group, id="0", mkstream=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, Exception) and "BUSYGROUP" not in str(result):
                raise result
        self._ranked[k.queue] = sorted([*known, *added], key=lambda x: -x.level)
        self.streams = [s for q in self._queues for s in self._ranked.get(q.queue, [q])]
        return added

    async def read(
        self, client: Redis, ranked: Sequence[QueueKeys], count: int
    ) -> list[tuple[str, Any]]:
        """Read up to ``count`` new entries of one queue, highest level first (the
        ``read_levels`` script: one round trip).

        Returns:
            ``(stream, entries)`` pairs, as an ``XREADGROUP`` reply has them.
        """
        reply = await scripts.run(
            client,
            scripts.READ_LEVELS,
            [s.stream for s in ranked],
            [self._group, self._name, count],
        )
        return [(ranked[int(reply[i]) - 1].stream, reply[i + 1]) for i in range(0, len(reply), 2)]
