"""Scripts a consumer runs besides settling: moving due delayed messages, forgetting idle
group members.
"""

from __future__ import annotations

from typing import Final

from chicory_redis.scripts.base import Script

__all__ = ["FORGET_IDLE", "MOVE_DUE"]

MOVE_DUE: Final = Script(
    "move_due",
    """
-- KEYS: delayed, stream. ARGV: now ms, limit.
-- Returns {moved, next due ms or -1}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', member)  -- a member is a packed message
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, math.floor(tonumber(nxt[2]))}
""",
)
"""Move due delayed messages to the stream, atomically (each exactly once)."""

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
