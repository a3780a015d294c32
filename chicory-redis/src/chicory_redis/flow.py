"""Rate-limit turns and concurrency permits in Redis: the ``flow_control`` capability.

Each operation is one Lua script on the keys of one limit (one hash tag, so cluster-safe),
timed by the server's clock (``TIME``), so every worker on every machine shares one limit
and one clock:

* ``take_turn``: a sliding window with a waiting line. ``<p>:{f:<key>}:starts`` is a sorted
  set of the starts of the last period, ``<p>:{f:<key>}:line`` the end of the waiting line
  (ms) and ``<p>:{f:<key>}:turns`` the turns of the holders in line, scored by their time.
  One call: a future turn of the holder is reported; a due turn (or no line) starts if the
  window has room; anything else takes the turn at the end of the line. The keys expire
  once nothing is pending.
* permits: ``<p>:{f:<key>}:permits`` is a sorted set of holders scored by their permit's
  expiry (ms); expired members are dropped before every count, so a dead worker's permit
  frees itself. The set expires with its last permit.

Cost: one round trip and O(log n) work per check (n: the turns or permits of that key); a
task without limits costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from chicory.flow import turn_slack
from chicory_redis import scripts
from chicory_redis.connection import broker_errors
from chicory_redis.keys import KeySpace

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "ACQUIRE_PERMIT",
    "FLOW_SCRIPTS",
    "RELEASE_PERMIT",
    "RENEW_PERMITS",
    "TAKE_TURN",
    "RedisFlowMethods",
]

TURN_GRACE_MS: Final = 3_600_000
"""Milliseconds after its time that an unused reserved turn is dropped."""

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
"""

TAKE_TURN = scripts.Script(
    "take_turn",
    _NOW
    + """
-- KEYS: line, turns, starts. ARGV: holder, limit, period, grace, slack (ms). Returns the
-- wait in ms.
local holder, limit = ARGV[1], tonumber(ARGV[2])
local period, grace, slack = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function ms(value) return string.format('%.3f', value) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - grace)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - period)
local turn = redis.call('ZSCORE', KEYS[2], holder)
if turn then
  turn = tonumber(turn)
  if turn > now then return ms(turn - now) end
  redis.call('ZREM', KEYS[2], holder)
end
local line = tonumber(redis.call('GET', KEYS[1]) or '0')
local used = redis.call('ZCARD', KEYS[3])
if (turn or line <= now) and used < limit then
  local at = now
  if turn then at = math.max(turn, now - slack) end
  redis.call('ZADD', KEYS[3], ms(at), ms(now) .. ' ' .. used .. ' ' .. holder)
  redis.call('PEXPIRE', KEYS[3], math.ceil(period) + 1000)
  return '0'
end
local at = math.max(line, now)
if used >= limit then
  local freeing = redis.call('ZRANGE', KEYS[3], used - limit, used - limit, 'WITHSCORES')
  at = math.max(at, tonumber(freeing[2]) + period)
end
redis.call('ZADD', KEYS[2], ms(at), holder)
redis.call('PEXPIRE', KEYS[2], math.ceil(at - now) + grace)
local after = at + period / limit
redis.call('SET', KEYS[1], ms(after), 'PX', math.ceil(after - now) + 1000)
return ms(at - now)
""",
)

_KEEP_ALIVE = """
-- The set lives as long as its latest permit.
local function keep_alive(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""

ACQUIRE_PERMIT = scripts.Script(
    "acquire_permit",
    _NOW
    + _KEEP_ALIVE
    + """
-- KEYS: permits. ARGV: holder, limit, ttl (ms). Returns 1 if held, 0 if none was free.
local holder, limit, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], holder) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], string.format('%.3f', now + ttl), holder)
keep_alive(KEYS[1], ttl)
return 1
""",
)

RENEW_PERMITS = scripts.Script(
    "renew_permits",
    _NOW
    + _KEEP_ALIVE
    + """
-- KEYS: permits. ARGV: ttl (ms), holders... Renews only unexpired permits.
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local until_ms = string.format('%.3f', now + ttl)
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', until_ms, ARGV[i])
end
if renewed > 0 then keep_alive(KEYS[1], ttl) end
return renewed
""",
)

RELEASE_PERMIT = scripts.Script(
    "release_permit",
    """
-- KEYS: permits. ARGV: holder.
return redis.call('ZREM', KEYS[1], ARGV[1])
""",
)

FLOW_SCRIPTS: Final = (TAKE_TURN, ACQUIRE_PERMIT, RENEW_PERMITS, RELEASE_PERMIT)


class RedisFlowMethods:
    """The ``flow_control`` methods of :class:`~chicory_redis.broker.RedisBroker`."""

    if TYPE_CHECKING:

        @property
        def client(self) -> Redis: ...

        @property
        def keys(self) -> KeySpace: ...

        @property
        def display_url(self) -> str: ...

    async def take_turn(self, key: str, holder: str, *, limit: int, period: float) -> float:
        """Ask to start one run under the rate limit ``key`` (see
        :meth:`chicory.flow.FlowControl.take_turn`).

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        keys = self.keys.flow(key)
        with broker_errors(self.display_url, f"take a turn of {key!r}"):
            wait = await scripts.run(
                self.client,
                TAKE_TURN,
                [keys.line, keys.turns, keys.starts],
                [
                    holder,
                    limit,
                    f"{period * 1000:.3f}",
                    TURN_GRACE_MS,
                    f"{turn_slack(period / limit) * 1000:.3f}",
                ],
            )
        return max(0.0, float(wait) / 1000)

    async def acquire_permit(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Take one of the ``limit`` permits of ``key`` for ``holder`` (see
        :meth:`chicory.flow.FlowControl.acquire_permit`).

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        permits = self.keys.flow(key).permits
        with broker_errors(self.display_url, f"take a permit of {key!r}"):
            taken = await scripts.run(
                self.client, ACQUIRE_PERMIT, [permits], [holder, limit, _ms(ttl)]
            )
        return bool(taken)

    async def renew_permits(self, key: str, holders: Sequence[str], *, ttl: float) -> None:
        """Renew the permits of ``key`` held by ``holders`` for ``ttl`` seconds.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        if not holders:
            return
        permits = self.keys.flow(key).permits
        with broker_errors(self.display_url, f"renew permits of {key!r}"):
            await scripts.run(self.client, RENEW_PERMITS, [permits], [_ms(ttl), *holders])

    async def release_permit(self, key: str, holder: str) -> None:
        """Free the permit of ``key`` held by ``holder``.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        permits = self.keys.flow(key).permits
        with broker_errors(self.display_url, f"release a permit of {key!r}"):
            await scripts.run(self.client, RELEASE_PERMIT, [permits], [holder])


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
