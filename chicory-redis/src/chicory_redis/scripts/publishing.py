"""Scripts that add new messages to a queue: batches, and a publish under a unique key."""

from __future__ import annotations

from typing import Final

from chicory_redis.scripts.base import LUA_NOW_MS, Script

__all__ = ["ENQUEUE", "PUBLISH_UNIQUE", "RELEASE_UNIQUE"]

ENQUEUE: Final = Script(
    "enqueue",
    """
-- KEYS: stream, delayed. ARGV[1]: how many ready messages follow; ARGV[2] .. ARGV[r + 1]: those
-- messages, packed (each becomes a stream entry's field m); then pairs of due time in ms and
-- packed message (each becomes a delayed-set member). Returns how many messages were added.
local stream, ready = KEYS[1], tonumber(ARGV[1])
for i = 2, ready + 1 do
  redis.call('XADD', stream, '*', 'm', ARGV[i])
end
local delayed = KEYS[2]
for i = ready + 2, #ARGV - 1, 2 do
  redis.call('ZADD', delayed, ARGV[i], ARGV[i + 1])
end
return ready + math.floor((#ARGV - 1 - ready) / 2)
""",
)
"""Publish a batch of new messages to one queue (stream, or delayed set when due later).

The stream is the one of the ready messages' priority; the caller records a priority
above 0 in the queue's levels set (``SADD``) in the same round trip.

One argument per message: Redis parses arguments in C, so each message reaches the script
as a string with no work in Lua to find it (a single argument holding the batch, cut apart
in Lua, cost ``redis-server`` ~0.6 us more per message; ``benchmarks/layout.py``).
"""

PUBLISH_UNIQUE: Final = Script(
    "publish_unique",
    LUA_NOW_MS
    + """
-- KEYS: claim, uniques, stream (of the message's priority), delayed; above priority 0,
--       the levels set.
-- ARGV: holder, hold ms, keep ms, due ms ('' = ready now), packed message; above priority
--       0, the priority.
-- Returns {1, holder} when the key was free (claimed and published), {0, holder} when held.
local held = redis.call('GET', KEYS[1])
if held then
  return {0, string.sub(held, string.find(held, ' ', 1, true) + 1)}
end
local hold, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SET', KEYS[1], (now + keep) .. ' ' .. ARGV[1], 'PX', hold)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + hold, KEYS[1])
if ARGV[4] == '' then
  if KEYS[5] then redis.call('SADD', KEYS[5], ARGV[6]) end
  redis.call('XADD', KEYS[3], '*', 'm', ARGV[5])
else
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
end
return {1, ARGV[1]}
""",
)
"""Claim a unique key and publish the message, or do neither if the key is held."""

RELEASE_UNIQUE: Final = Script(
    "release_unique",
    LUA_NOW_MS
    + """
-- KEYS: claim, uniques. ARGV: holder. Returns 1 if the holder held the key, else 0.
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local sep = string.find(held, ' ', 1, true)
if string.sub(held, sep + 1) ~= ARGV[1] then return 0 end
local keep = tonumber(string.sub(held, 1, sep - 1))
if keep > now then
  redis.call('PEXPIREAT', KEYS[1], keep)
  redis.call('ZADD', KEYS[2], keep, KEYS[1])
else
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return 1
""",
)
"""End a holder's claim on a unique key (now, or when its keep time ends); safe to repeat."""
