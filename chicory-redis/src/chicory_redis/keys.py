"""Every Redis key and channel name Chicory uses, built here and nowhere else.

Layout (``<p>`` is the key prefix, ``chicory`` by default)::

    <p>:{q:<queue>}:stream     stream    ready and in-flight messages of <queue> (priority 0)
    <p>:{q:<queue>}:stream:<n> stream    the same, of priority <n> (1 to 9), once one was sent
    <p>:{q:<queue>}:levels     set       the priorities above 0 <queue> has a stream for
    <p>:{q:<queue>}:delayed    zset      delayed messages, scored by due time (ms)
    <p>:{q:<queue>}:dead       stream    dead letters of <queue>
    <p>:{q:<queue>}:consumers  zset      live consumers of <queue>, scored by expiry (ms)
    <p>:{q:<queue>}:unique:<k> string    the claim on unique key <k>: "<keep until ms> <holder>"
    <p>:{q:<queue>}:uniques    zset      the claim keys of <queue>, scored by expiry (ms)
    <p>:queues                 set       names of every queue published to or consumed
    <p>:result:<task_id>       string    one task's latest record (with a TTL)
    <p>:results:final          channel   pub/sub: task ids whose final record was written
    <p>:revoked                zset      revoked (cancelled) task ids, scored by expiry (ms)
    <p>:revocations            channel   pub/sub: "<expiry ms> <task id>" per revocation
    <p>:worker:<worker_id>     string    one worker's heartbeat record (with a TTL)
    <p>:{f:<key>}:starts       zset      a rate limit's starts in its window, by time (ms)
    <p>:{f:<key>}:line         string    the end of a rate limit's waiting line (ms)
    <p>:{f:<key>}:turns        zset      a rate limit's turns in line, holder by time (ms)
    <p>:{f:<key>}:permits      zset      a concurrency limit's permits, holder by expiry (ms)
    <p>:workers                zset      worker ids scored by heartbeat expiry (ms)

The consumer group of every queue stream is named ``<p>``.

Scripts that route a message by its priority (moving due delayed messages, replaying a dead
letter) name a level's stream themselves, as the level-0 stream's name followed by
``:<n>``: :meth:`QueueKeys.at_level` is that rule's Python side.

The ``{q:<queue>}`` hash tag puts all keys of one queue in one Redis Cluster slot, so every
Lua script (each touches the keys of one queue only) is cluster-safe. Nothing here is ever
enumerated with ``KEYS``; the worker index is a sorted set instead.
"""

from __future__ import annotations

import attrs

__all__ = ["FlowKeys", "KeySpace", "QueueKeys"]


@attrs.frozen(kw_only=True)
class QueueKeys:
    """The keys of one queue (all in one cluster slot).

    Attributes:
        queue: The queue name.
        base: What every key of the queue starts with (``<p>:{q:<queue>}``).
        stream: Stream of ready and in-flight messages (of priority ``level``).
        level: The priority whose messages ``stream`` holds (0 to 9).
        levels: Set of the priorities above 0 that have a stream.
        delayed: Sorted set of delayed messages.
        dead: Stream of dead letters.
        consumers: Sorted set of the queue's live consumers, scored by when their presence
            expires (ms since the epoch).
        group: Consumer group name on ``stream``.
        uniques: Sorted set of the queue's unique-key claims (their key names), scored by
            when each ends (ms since the epoch), so deleting the queue finds them.
    """

    queue: str
    base: str
    stream: str
    level: int
    levels: str
    delayed: str
    dead: str
    consumers: str
    group: str
    uniques: str

    def unique(self, key: str) -> str:
        """Return the key holding the claim on unique key ``key`` in this queue."""
        return f"{self.base}:unique:{key}"

    def at_level(self, level: int) -> QueueKeys:
        """The keys of this queue with ``stream`` the stream of priority ``level`` (0 to 9):
        ``<p>:{q:<queue>}:stream``, or ``...:stream:<level>`` above 0."""
        if level == self.level:
            return self
        stream = f"{self.base}:stream" if level == 0 else f"{self.base}:stream:{level}"
        return attrs.evolve(self, stream=stream, level=level)


@attrs.frozen(kw_only=True)
class FlowKeys:
    """The keys of one flow limit (all in one cluster slot; see :mod:`chicory_redis.flow`).

    Attributes:
        starts: Sorted set of the rate limit's starts in its window.
        line: The end of the rate limit's waiting line.
        turns: Sorted set of the turns in line.
        permits: Sorted set of concurrency permits.
    """

    starts: str
    line: str
    turns: str
    permits: str


@attrs.frozen
class KeySpace:
    """Builds key names under one prefix.

    Args:
        prefix: First part of every key (validated by the settings: no braces).
    """

    prefix: str

    @property
    def group(self) -> str:
        """Name of the consumer group on every queue stream."""
        return self.prefix

    def queue(self, name: str) -> QueueKeys:
        """Return the keys of queue ``name``."""
        base = f"{self.prefix}:{{q:{name}}}"
        return QueueKeys(
            queue=name,
            base=base,
            stream=f"{base}:stream",
            level=0,
            levels=f"{base}:levels",
            delayed=f"{base}:delayed",
            dead=f"{base}:dead",
            consumers=f"{base}:consumers",
            group=self.group,
            uniques=f"{base}:uniques",
        )

    def flow(self, key: str) -> FlowKeys:
        """Return the keys of the flow limit ``key`` (a task name)."""
        base = f"{self.prefix}:{{f:{key}}}"
        return FlowKeys(
            starts=f"{base}:starts",
            line=f"{base}:line",
            turns=f"{base}:turns",
            permits=f"{base}:permits",
        )

    @property
    def queues(self) -> str:
        """Set of the names of every queue published to or consumed (``chicory queues``)."""
        return f"{self.prefix}:queues"

    def result(self, task_id: str) -> str:
        """Return the key holding the record of ``task_id``."""
        return f"{self.prefix}:result:{task_id}"

    def flow_group(self, group_id: str) -> str:
        """Return the hash of the members' records of workflow group ``group_id``."""
        return f"{self.prefix}:group:{group_id}"

    def progress_channel(self, task_id: str) -> str:
        """Pub/sub channel on which the progress records of ``task_id`` are published."""
        return f"{self.prefix}:progress:{task_id}"

    @property
    def result_channel(self) -> str:
        """Pub/sub channel on which the ids of tasks with a new final record are published."""
        return f"{self.prefix}:results:final"

    @property
    def revoked(self) -> str:
        """Sorted set of revoked task ids scored by when the revocation expires (ms)."""
        return f"{self.prefix}:revoked"

    @property
    def revocation_channel(self) -> str:
        """Pub/sub channel on which each revocation is published as ``<expiry ms> <task id>``."""
        return f"{self.prefix}:revocations"

    def worker(self, worker_id: str) -> str:
        """Return the key holding the heartbeat of ``worker_id``."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers(self) -> str:
        """Sorted set of worker ids scored by heartbeat expiry (ms since the epoch)."""
        return f"{self.prefix}:workers"
