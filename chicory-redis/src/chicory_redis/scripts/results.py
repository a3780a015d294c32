"""Scripts of the result backend: result and progress records, workflow groups."""

from __future__ import annotations

from typing import Final

from chicory_redis.scripts.base import Script

__all__ = ["JOIN_GROUP", "STORE_PROGRESS", "STORE_RESULT", "STORE_RESULTS"]

STORE_RESULT: Final = Script(
    "store_result",
    """
-- KEYS: result key. ARGV: marked record, final ('0' no, '1' yes, '2' yes but announce the
-- task id only), ttl ms, channel, task id.
-- A record starts with 'F' (final) or 'P' (not final). Returns 1 if written; a final record
-- is never replaced (the first one wins).
-- A final record is announced as '<#task id>:<task id>' followed by the marked record
-- (final '1') or by nothing (final '2').
local final = ARGV[2]
if redis.call('GETRANGE', KEYS[1], 0, 0) == 'F' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if final == '1' then
  redis.call('PUBLISH', ARGV[4], #ARGV[5] .. ':' .. ARGV[5] .. ARGV[1])
elseif final == '2' then
  redis.call('PUBLISH', ARGV[4], #ARGV[5] .. ':' .. ARGV[5])
end
return 1
""",
)
"""Write a result record with a TTL unless a final one is there; announce finals."""

STORE_RESULTS: Final = Script(
    "store_results",
    """
-- STORE_RESULT for several records. KEYS: result keys. ARGV: channel, ttl ms, then per key
-- three values: marked record, final flag (as in STORE_RESULT), task id.
-- Returns how many were written.
local channel, ttl, written = ARGV[1], ARGV[2], 0
for i = 1, #KEYS do
  local record, final, id = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  if redis.call('GETRANGE', KEYS[i], 0, 0) ~= 'F' then
    redis.call('SET', KEYS[i], record, 'PX', ttl)
    written = written + 1
    if final == '1' then
      redis.call('PUBLISH', channel, #id .. ':' .. id .. record)
    elseif final == '2' then
      redis.call('PUBLISH', channel, #id .. ':' .. id)
    end
  end
end
return written
""",
)
"""Several STORE_RESULT writes in one call: the worker's batch of results, one round trip.

Its keys are result keys of different tasks, so on Redis Cluster they would span slots; a
Cluster-aware caller would group a batch by slot first (Chicory has no Cluster client).
"""

STORE_PROGRESS: Final = Script(
    "store_progress",
    """
-- KEYS: result key. ARGV: marked record ('P' first), ttl ms, the task's progress channel.
-- Writes a progress record unless a final record is there, and publishes it (marked) on
-- the task's channel. Returns 1 if written.
if redis.call('GETRANGE', KEYS[1], 0, 0) == 'F' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
""",
)
"""Write a task's progress record unless it has a final one, and push it to its watchers."""

JOIN_GROUP: Final = Script(
    "join_group",
    """
-- KEYS: the group's hash. ARGV: member index, member count, member record, ttl ms.
-- Records the member (replacing an earlier record of that index, so a member joined twice
-- counts once) and, if every member is recorded now, returns all records in index order
-- (fetched in slices, as Lua's unpack has a limit); otherwise nil.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local size = tonumber(ARGV[2])
if redis.call('HLEN', KEYS[1]) < size then return false end
local all = {}
for first = 0, size - 1, 1000 do
  local fields = {}
  for i = first, math.min(first + 999, size - 1) do fields[#fields + 1] = tostring(i) end
  for _, record in ipairs(redis.call('HMGET', KEYS[1], unpack(fields))) do
    if not record then return false end
    all[#all + 1] = record
  end
end
return all
""",
)
"""Record one member of a group and, atomically, return the group if it is complete."""
