"""What every script module builds on: :class:`Script`, and the Lua helpers scripts share.

The helpers are Lua source prepended to a script's own: ``owned`` / ``owned_many`` /
``owned_each`` (is an entry still pending for the calling consumer?), ``trim_dead`` (drop
dead letters over the limits), ``now`` (the server's clock in ms) and the priority helpers
``level_of_headers`` / ``level_of_packed`` / ``level_stream``.
"""

from __future__ import annotations

import hashlib
from typing import Final

import attrs

__all__ = ["LUA_LEVELS", "LUA_NOW_MS", "LUA_OWNED", "LUA_OWNED_MANY", "LUA_TRIM_DEAD", "Script"]


@attrs.frozen
class Script:
    """A named Lua script and its SHA1 (computed locally, as Redis does).

    Attributes:
        name: For error messages.
        source: The Lua source.
    """

    name: str
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


LUA_TRIM_DEAD: Final = """
-- Dead letters are the one stream trimmed: exactly, oldest first, by count and by age (the
-- age by the stream ids, which are the server's clock). Never used on a queue's stream.
local function trim_dead(dead, keep, max_age_ms)
  if max_age_ms ~= '' then
    local now = redis.call('TIME')
    local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('XTRIM', dead, 'MINID', oldest - tonumber(max_age_ms))
  end
  if keep ~= '' then redis.call('XTRIM', dead, 'MAXLEN', tonumber(keep)) end
end
"""

LUA_OWNED: Final = """
local function owned(stream, group, consumer, id)
  return #redis.call('XPENDING', stream, group, id, id, 1, consumer) > 0
end
"""

LUA_OWNED_MANY: Final = """
-- Entry ids arrive as one argument, separated by spaces (stream ids have none): one argument
-- instead of one per id is much cheaper for the client to build and send.
local function split_ids(text)
  local ids = {}
  for id in string.gmatch(text, '[^ ]+') do ids[#ids + 1] = id end
  return ids
end

-- The entries of ids still pending for consumer, in their order: one XPENDING over the range
-- the ids span (the consumer's own pending list only), not one per id. nil if an id is not
-- a stream id.
local function owned_many(stream, group, consumer, ids)
  local lo, hi, lo_ms, lo_seq, hi_ms, hi_seq
  for _, id in ipairs(ids) do
    local dash = string.find(id, '-', 1, true)
    if not dash then return nil end
    local ms, seq = tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
    if not ms or not seq then return nil end
    if not lo or ms < lo_ms or (ms == lo_ms and seq < lo_seq) then
      lo, lo_ms, lo_seq = id, ms, seq
    end
    if not hi or ms > hi_ms or (ms == hi_ms and seq > hi_seq) then
      hi, hi_ms, hi_seq = id, ms, seq
    end
  end
  local mine = {}
  if not lo then return mine end
  local pending = {}
  for _, entry in ipairs(redis.call('XPENDING', stream, group, lo, hi, 1000000000, consumer)) do
    pending[entry[1]] = true
  end
  for _, id in ipairs(ids) do
    if pending[id] then mine[#mine + 1] = id end
  end
  return mine
end

-- owned_many, or (an id that is not a stream id) each id checked on its own.
local function owned_each(stream, group, consumer, ids)
  local mine = owned_many(stream, group, consumer, ids)
  if mine then return mine end
  mine = {}
  for _, id in ipairs(ids) do
    if owned(stream, group, consumer, id) then mine[#mine + 1] = id end
  end
  return mine
end
"""

LUA_NOW_MS: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

LUA_LEVELS: Final = """
-- A message's priority: its headers' chicory-priority (one digit, 0 to 9), 0 without one.
-- Headers are compact JSON with every quote in a name or value escaped, so the pattern can
-- only match a real member.
local function level_of_headers(headers)
  local p = string.match(headers, '[{,]"chicory%-priority":"(%d)"[,}]')
  return p and tonumber(p) or 0
end

-- The priority of a packed message (id \\n n \\n headers \\n body): only the id, the count
-- and the headers are searched, never the body.
local function level_of_packed(packed)
  local a = string.find(packed, '\\n', 1, true)
  local b = a and string.find(packed, '\\n', a + 1, true)
  local c = b and string.find(packed, '\\n', b + 1, true)
  if not c or c - b < 20 then return 0 end  -- no room for the header: '{}' and the like
  return level_of_headers(string.sub(packed, b + 1, c - 1))
end

-- The stream of priority n of the queue whose level-0 stream is stream0: stream0 itself,
-- or stream0 .. ':' .. n (same hash tag) recorded in the queue's levels set.
local function level_stream(stream0, levels, n)
  if n == 0 then return stream0 end
  redis.call('SADD', levels, n)
  return stream0 .. ':' .. n
end
"""
