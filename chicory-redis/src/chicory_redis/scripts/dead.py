"""Scripts over a queue's dead letters: trimming to the limits, replaying, requeueing."""

from __future__ import annotations

from typing import Final

from chicory_redis.scripts.base import LUA_LEVELS, LUA_TRIM_DEAD, Script

__all__ = ["REPLAY", "REQUEUE_DEAD", "TRIM_DEAD"]

TRIM_DEAD: Final = Script(
    "trim_dead",
    LUA_TRIM_DEAD
    + """
-- KEYS: dead. ARGV: dead letters kept ('' = all), their max age ms ('' = any).
trim_dead(KEYS[1], ARGV[1], ARGV[2])
return redis.call('XLEN', KEYS[1])
""",
)
"""Drop a queue's dead letters over the limits (before they are listed or counted)."""

REPLAY: Final = Script(
    "replay",
    LUA_LEVELS
    + """
-- KEYS: dead, stream (level 0), levels. ARGV: dead letter id, the replayed message's new id.
-- Returns 1 if replayed, 0 if unknown. The message goes to its priority's stream.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return 0 end
local raw, f = found[1][2], {}
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
local headers = f['headers'] or '{}'
local stream = level_stream(KEYS[2], KEYS[3], level_of_headers(headers))
redis.call('XADD', stream, '*', 'm',
  ARGV[2] .. '\\n0\\n' .. headers .. '\\n' .. (f['body'] or ''))
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
""",
)
"""Put a dead letter back on its queue as a new message (new id, delivery count 0; same
body and headers, so the same priority)."""

REQUEUE_DEAD: Final = Script(
    "requeue_dead",
    """
-- KEYS: dead, stream (of the message's priority); above priority 0, the levels set.
-- ARGV: dead letter id, packed message; above priority 0, the priority.
-- Returns 1 if the dead letter was replaced by the message, 0 if there is no such dead letter.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
if KEYS[3] then redis.call('SADD', KEYS[3], ARGV[3]) end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
return 1
""",
)
"""Replace a dead letter by a new message on its queue (a replay with a rewritten body)."""
