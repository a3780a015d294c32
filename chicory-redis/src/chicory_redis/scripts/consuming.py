"""Scripts a consumer runs besides settling: moving due delayed messages, reading a queue's
priority levels highest first, forgetting idle group members.
"""

from __future__ import annotations

from typing import Final

from chicory_redis.scripts.base import LUA_LEVELS, Script

__all__ = ["FORGET_IDLE", "MOVE_DUE", "READ_LEVELS"]

MOVE_DUE: Final = Script(
    "move_due",
    LUA_LEVELS
    + """
-- KEYS: delayed, stream (level 0), levels. ARGV: now ms, limit.
-- Returns {moved, next due ms or -1, the levels above 0 the queue has a stream for...}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  -- a member is a packed message: its priority is read from its headers (not its body)
  local stream = level_stream(KEYS[2], KEYS[3], level_of_packed(member))
  redis.call('XADD', stream, '*', 'm', member)
  redis.call('ZREM', KEYS[1], member)
end
local out = {#due, -1}
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt > 0 then out[2] = math.floor(tonumber(nxt[2])) end
for _, level in ipairs(redis.call('SMEMBERS', KEYS[3])) do out[#out + 1] = level end
return out
""",
)
"""Move due delayed messages to their priority's stream, atomically (each exactly once), and
say which priority levels the queue has (how consumers learn of them)."""

READ_LEVELS: Final = Script(
    "read_levels",
    """
-- KEYS: a queue's streams, highest priority first. ARGV: group, consumer, count.
-- Reads new entries (XREADGROUP ... >) from the first stream that has some, then the next,
-- until count are read. Returns {stream index, entries, stream index, entries, ...}.
local want, out = tonumber(ARGV[3]), {}
for i, stream in ipairs(KEYS) do
  if want <= 0 then break end
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
    'STREAMS', stream, '>')
  if got then
    local entries = got[1][2]
    out[#out + 1] = i
    out[#out + 1] = entries
    want = want - #entries
  end
end
return out
""",
)
"""Read a queue with priorities highest level first, in one round trip (a queue without
priorities is read with a plain ``XREADGROUP``)."""

FORGET_IDLE: Final = Script(
    "forget_idle",
    """
-- KEYS: stream. ARGV: group, least idle time (ms), the calling consumer's name.
-- Deletes from the group every consumer but the caller that has nothing pending and has been
-- idle at least that long; returns their names. In one script, so no consumer can read an
-- entry between the check and the delete (XGROUP DELCONSUMER drops its pending entries).
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
local gone = {}
if not ok then return gone end  -- no stream or no group yet: nobody to forget
local least = tonumber(ARGV[2])
for _, fields in ipairs(consumers) do
  local info = {}
  for i = 1, #fields, 2 do info[fields[i]] = fields[i + 1] end
  if info['name'] ~= ARGV[3] and info['pending'] == 0 and info['idle'] >= least then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone[#gone + 1] = info['name']
  end
end
return gone
""",
)
"""Delete the group members that killed workers left behind (nothing pending, long idle)."""
