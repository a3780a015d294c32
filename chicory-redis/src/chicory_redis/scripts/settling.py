"""Scripts that settle what a consumer holds: ack, requeue (nack, retry, hand-back), dead-letter,
renew. Each first checks the entry is still pending for the calling consumer.
"""

from __future__ import annotations

from typing import Final

from chicory_redis.scripts.base import LUA_OWNED, LUA_OWNED_MANY, LUA_TRIM_DEAD, Script

__all__ = ["ACK", "DEAD_LETTER", "RENEW", "REQUEUE"]

ACK: Final = Script(
    "ack",
    LUA_OWNED
    + """
-- KEYS: stream. ARGV: group, consumer, lo, hi, entry ids separated by spaces (at most a few
-- thousand). lo and hi are entry ids that should bound the others (the caller's guess): one
-- XPENDING over that range, the consumer's own pending list only, finds them; an id outside
-- it, or no longer pending there, is checked on its own. Returns the ids not acked: no
-- longer pending for the consumer (reclaimed by another consumer, or deleted).
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local pending = {}
for _, entry in ipairs(redis.call('XPENDING', stream, group, ARGV[3], ARGV[4], 1000000000,
    consumer)) do
  pending[entry[1]] = true
end
local mine, lost = {}, {}
for id in string.gmatch(ARGV[5], '[^ ]+') do
  if pending[id] or owned(stream, group, consumer, id) then
    mine[#mine + 1] = id
  else
    lost[#lost + 1] = id
  end
end
if #mine > 0 then
  redis.call('XACK', stream, group, unpack(mine))
  redis.call('XDEL', stream, unpack(mine))
end
return lost
""",
)
"""Ack and delete entries (so the stream never grows with settled work).

The range is a hint, never trusted: an id outside it costs one more ``XPENDING``, not a
wrong answer. Bounding the ids in Lua instead (parsing every id into its two numbers) cost
``redis-server`` more than the whole check does now.
"""

REQUEUE: Final = Script(
    "requeue",
    LUA_OWNED
    + LUA_TRIM_DEAD
    + """
-- KEYS: stream, delayed, dead; when the message goes to another priority's stream, that
--       stream, and above priority 0 the queue's levels set.
-- ARGV: group, consumer, entry id, due ms ('' = now, '-' = drop), max deliveries ('' = none),
--       now ms, message id, n, headers, body, dead letters kept ('' = all), their max age ms;
--       with the levels set, the message's priority.
-- Returns 0 (not ours: nothing done), 1 (done), 2 (dead-lettered at max deliveries).
-- A message delayed goes to the delayed set, whose mover routes it by its priority.
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
if not owned(stream, ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('XACK', stream, ARGV[1], ARGV[3])
redis.call('XDEL', stream, ARGV[3])
local due, limit, mid, n, headers, body = ARGV[4], ARGV[5], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
if due == '-' then return 1 end
if limit ~= '' and tonumber(n) >= tonumber(limit) then
  redis.call('XADD', dead, '*', 'id', mid, 'n', n, 'headers', headers, 'body', body,
    'reason', 'delivered ' .. n .. ' times without being settled (max_deliveries=' .. limit .. ')',
    'dead_at', ARGV[6])
  trim_dead(dead, ARGV[11], ARGV[12])
  return 2
end
local packed = mid .. '\\n' .. n .. '\\n' .. headers .. '\\n' .. body
if due == '' then
  if KEYS[4] then stream = KEYS[4] end
  if KEYS[5] then redis.call('SADD', KEYS[5], ARGV[13]) end
  redis.call('XADD', stream, '*', 'm', packed)
else
  redis.call('ZADD', delayed, due, packed)
end
return 1
""",
)
"""Settle an entry and publish a message in its place, atomically.

Used by ``nack`` (same message, now, later or dropped), ``retry`` (a replacement message,
to another priority's stream if its priority changed) and by a closing consumer handing its
entries back (each to the stream it came from, so it keeps its priority).
"""

DEAD_LETTER: Final = Script(
    "dead_letter",
    LUA_OWNED
    + LUA_TRIM_DEAD
    + """
-- KEYS: stream, dead. ARGV: group, consumer, entry id ('' = record a copy only),
--       message id, n, headers, body, reason, dead_at ms, dead letters kept ('' = all),
--       their max age ms ('' = any). Returns the dead letter id or nil.
if ARGV[3] ~= '' then
  if not owned(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return false end
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
end
local id = redis.call('XADD', KEYS[2], '*', 'id', ARGV[4], 'n', ARGV[5], 'headers', ARGV[6],
  'body', ARGV[7], 'reason', ARGV[8], 'dead_at', ARGV[9])
trim_dead(KEYS[2], ARGV[10], ARGV[11])
return id
""",
)
"""Move an entry to the dead-letter stream with why, when and how often, atomically, and
drop the queue's dead letters over the limits."""

RENEW: Final = Script(
    "renew",
    LUA_OWNED
    + LUA_OWNED_MANY
    + """
-- KEYS: stream. ARGV: group, consumer, entry ids separated by spaces. Returns the ids still
-- ours (renewed).
local renewed = owned_each(KEYS[1], ARGV[1], ARGV[2], split_ids(ARGV[3]))
if #renewed > 0 then
  local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(renewed) do claim[#claim + 1] = id end
  claim[#claim + 1] = 'JUSTID'  -- JUSTID: the delivery count is left alone
  redis.call(unpack(claim))
end
return renewed
""",
)
"""Reset the idle time of entries still owned by the caller (``XCLAIM ... JUSTID``)."""
