"""The Lua scripts that make multi-step Redis operations atomic, and how they are run.

Each script touches the keys of one queue (one hash tag) or one result key only, so all are
Redis Cluster safe. Scripts are loaded once on connect and called with ``EVALSHA``; if the
server lost them (restart, ``SCRIPT FLUSH``) they are loaded again and the call repeated,
which is safe because a ``NOSCRIPT`` reply means nothing ran.

A message is stored packed, ``id \\n n \\n headers \\n body`` (the message id, stable across
redeliveries; deliveries before this entry was added, carried across requeues; headers as
JSON; the body): a stream entry is the one field ``m`` holding it, and a delayed message is
the same string as a sorted-set member scored by its due time in milliseconds (see
:mod:`chicory_redis.entries`). One field instead of four makes every ``XADD`` and every
entry ``XREADGROUP`` returns cheaper for Redis, and a script moves a message between the
delayed set and the stream without taking it apart. Dead letters keep one field per part
(``id``, ``n``, ``headers``, ``body``) plus ``reason`` and ``dead_at`` (ms), for people
reading them with ``XRANGE``.

Settle scripts first check, with ``XPENDING ... <id> <id> 1 <consumer>`` (or one ``XPENDING``
over the range a batch spans), that the entry is still pending *for the calling consumer*: a
consumer whose lease expired and whose entry was reclaimed by another consumer can no longer
ack, requeue or renew it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, TypeVar

import attrs
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from chicory_redis.config import RedisSettings
from chicory_redis.connection import CONNECTION_ERRORS, create_client, is_auth_error

__all__ = [
    "ACK",
    "ALL_SCRIPTS",
    "DEAD_LETTER",
    "ENQUEUE",
    "FORGET_IDLE",
    "JOIN_GROUP",
    "MOVE_DUE",
    "RENEW",
    "REPLAY",
    "REQUEUE",
    "REQUEUE_DEAD",
    "STORE_PROGRESS",
    "STORE_RESULT",
    "STORE_RESULTS",
    "TRIM_DEAD",
    "Call",
    "Script",
    "chunked",
    "load_all",
    "open_client",
    "run",
    "run_many",
]


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


_TRIM_DEAD = """
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

_OWNED = """
local function owned(stream, group, consumer, id)
  return #redis.call('XPENDING', stream, group, id, id, 1, consumer) > 0
end
"""

_OWNED_MANY = """
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

ACK: Final = Script(
    "ack",
    _OWNED
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

One argument per message: Redis parses arguments in C, so each message reaches the script
as a string with no work in Lua to find it (a single argument holding the batch, cut apart
in Lua, cost ``redis-server`` ~0.6 us more per message; ``benchmarks/layout.py``).
"""

REQUEUE: Final = Script(
    "requeue",
    _OWNED
    + _TRIM_DEAD
    + """
-- KEYS: stream, delayed, dead.
-- ARGV: group, consumer, entry id, due ms ('' = now, '-' = drop), max deliveries ('' = none),
--       now ms, message id, n, headers, body, dead letters kept ('' = all), their max age ms.
-- Returns 0 (not ours: nothing done), 1 (done), 2 (dead-lettered at max deliveries).
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
  redis.call('XADD', stream, '*', 'm', packed)
else
  redis.call('ZADD', delayed, due, packed)
end
return 1
""",
)
"""Settle an entry and publish a message in its place, atomically.

Used by ``nack`` (same message, now, later or dropped), ``retry`` (a replacement message)
and by a closing consumer handing its entries back.
"""

DEAD_LETTER: Final = Script(
    "dead_letter",
    _OWNED
    + _TRIM_DEAD
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

TRIM_DEAD: Final = Script(
    "trim_dead",
    _TRIM_DEAD
    + """
-- KEYS: dead. ARGV: dead letters kept ('' = all), their max age ms ('' = any).
trim_dead(KEYS[1], ARGV[1], ARGV[2])
return redis.call('XLEN', KEYS[1])
""",
)
"""Drop a queue's dead letters over the limits (before they are listed or counted)."""

RENEW: Final = Script(
    "renew",
    _OWNED
    + _OWNED_MANY
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

REPLAY: Final = Script(
    "replay",
    """
-- KEYS: dead, stream. ARGV: dead letter id, the replayed message's new id.
-- Returns 1 if replayed, 0 if unknown.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return 0 end
local raw, f = found[1][2], {}
for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
redis.call('XADD', KEYS[2], '*', 'm',
  ARGV[2] .. '\\n0\\n' .. (f['headers'] or '{}') .. '\\n' .. (f['body'] or ''))
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
""",
)
"""Put a dead letter back on its queue as a new message (new id, delivery count 0; same
body and headers)."""

REQUEUE_DEAD: Final = Script(
    "requeue_dead",
    """
-- KEYS: dead, stream. ARGV: dead letter id, packed message. Returns 1 if the dead letter was
-- replaced by the message, 0 if there is no such dead letter.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', 'm', ARGV[2])
return 1
""",
)
"""Replace a dead letter by a new message on its queue (a replay with a rewritten body)."""

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

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

PUBLISH_UNIQUE: Final = Script(
    "publish_unique",
    _NOW_MS
    + """
-- KEYS: claim, uniques, stream, delayed.
-- ARGV: holder, hold ms, keep ms, due ms ('' = ready now), packed message.
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
    _NOW_MS
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

ALL_SCRIPTS: Final = (
    ACK,
    ENQUEUE,
    REQUEUE,
    DEAD_LETTER,
    RENEW,
    MOVE_DUE,
    FORGET_IDLE,
    REPLAY,
    REQUEUE_DEAD,
    STORE_RESULT,
    STORE_RESULTS,
    TRIM_DEAD,
    PUBLISH_UNIQUE,
    RELEASE_UNIQUE,
)

Arg = str | bytes | int | float


@attrs.frozen
class Call:
    """One script invocation for :func:`run_many`."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]

    def command(self) -> tuple[Arg, ...]:
        """The ``EVALSHA`` command of this call."""
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


CHUNK: Final = 500
"""Most items (messages, results) one batch script call takes."""

CHUNK_BYTES: Final = 1 << 20
"""A batch script call takes items until they reach about this many bytes: a script blocks
Redis while it runs, so large items go a few per call."""

_T = TypeVar("_T")


def chunked(items: Sequence[_T], size: Callable[[_T], int]) -> list[list[_T]]:
    """Split ``items`` into batch script calls of at most :data:`CHUNK` items, starting a
    new one once a chunk's ``size`` reaches :data:`CHUNK_BYTES`."""
    chunks: list[list[_T]] = []
    chunk: list[_T] = []
    total = 0
    for item in items:
        if chunk and (len(chunk) >= CHUNK or total >= CHUNK_BYTES):
            chunks.append(chunk)
            chunk, total = [], 0
        chunk.append(item)
        total += size(item)
    if chunk:
        chunks.append(chunk)
    return chunks


async def load_all(client: Redis, scripts: Sequence[Script] = ALL_SCRIPTS) -> None:
    """Load ``scripts`` into the server's script cache (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for script in scripts:
        pipe.script_load(script.source)
    await pipe.execute()


async def open_client(
    settings: RedisSettings,
    needed: Sequence[Script],
    errors: Callable[[str, str], AbstractContextManager[None]],
) -> Redis:
    """Return a new client that answered ``PING`` and has ``needed`` loaded.

    The client is closed again if either step fails; ``errors`` (``broker_errors`` or
    ``results_errors``) turns the failure into the caller's error type.
    """
    client = create_client(settings)
    try:
        with errors(settings.display_url, "connect"):
            await client.ping()
            await load_all(client, needed)
    except BaseException:
        await client.aclose(close_connection_pool=True)
        raise
    return client


async def run(client: Redis, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run ``script`` with ``EVALSHA``, loading it first if the server lost it.

    A connection error (not a timeout, not a refused login) is met by running the script
    once more, on another connection: a pooled connection can die between the pool's check
    and the command, and every script run here is safe to repeat. (``enqueue`` and a
    dead-letter copy are not, and go through :mod:`chicory_redis.sending` instead.)
    """
    try:
        return await _run(client, script, keys, args)
    except redis_errors.ConnectionError as exc:
        if is_auth_error(exc):
            raise
        return await _run(client, script, keys, args)


async def _run(client: Redis, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(keys), *keys, *args)


async def run_many(client: Redis, calls: Sequence[Call]) -> list[Any]:
    """Run several script calls in one pipelined round trip (not a transaction).

    Each call is atomic on its own. Calls the server could not run for lack of the script
    are repeated once it is loaded; a connection error repeats them all once, as
    :func:`run` does.

    Returns:
        One result per call, in order; a call that failed has its exception as its result.
    """
    if not calls:
        return []
    if len(calls) == 1:  # one command: no pipeline object to build
        call = calls[0]
        try:
            return [await run(client, call.script, call.keys, call.args)]
        except CONNECTION_ERRORS:
            raise
        except RedisError as exc:
            return [exc]
    try:
        results = await _pipeline(client, calls)
    except redis_errors.ConnectionError as exc:
        if is_auth_error(exc):
            raise
        results = await _pipeline(client, calls)
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        lost = {calls[i].script.sha: calls[i].script for i in missing}
        await load_all(client, list(lost.values()))
        retried = await _pipeline(client, [calls[i] for i in missing])
        for index, result in zip(missing, retried, strict=True):
            results[index] = result
    return results


async def _pipeline(client: Redis, calls: Sequence[Call]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    return list(await pipe.execute(raise_on_error=False))
