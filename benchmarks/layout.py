"""What a message costs ``redis-server``: by stream entry layout, and by way of acking.

Usage (from the repository root, Redis on 127.0.0.1:6379 running on this machine; only
keys under ``chicory-layout:`` in database 13 are touched, and deleted at the end)::

    .venv/bin/python benchmarks/layout.py [--messages N] [--rounds N]

Each variant adds ``--messages`` entries with a batch script (500 messages per call), reads
them with ``XREADGROUP COUNT 256`` and acks each batch read; the CPU time of the
``redis-server`` process (psutil) per message is printed for each step, median of the rounds
(the variants alternate within a round). Variants:

* *four fields*: the entry layout the broker used before (``id``, ``n``, ``headers``,
  ``body``), added by a script shaped like the broker's ``enqueue`` of then (the messages
  back to back in one argument, their lengths in another), kept here to measure against,
  acked with the broker's ``ack`` script;
* *packed, one argument*: the broker's earlier ``enqueue`` for the layout of today (one
  field ``m``; the batch in one argument, cut apart in Lua), acked like the next;
* *packed*: the broker's own :data:`~chicory_redis.scripts.ENQUEUE` (one field ``m``, one
  argument per message), acked
  with its :data:`~chicory_redis.scripts.ACK` script (ownership checked, then ``XACK`` +
  ``XDEL``);
* *packed, plain ack*: the same, acked with plain ``XACK`` + ``XDEL`` (no ownership check):
  what that check costs.
"""

from __future__ import annotations

import argparse
import itertools
import statistics

import psutil  # type: ignore[import-untyped]
import redis
from common import redis_pid

from chicory_redis.scripts import ACK, ENQUEUE

FOUR_FIELDS = """
local blob, start = ARGV[2], 1
for size in string.gmatch(ARGV[1], '%d+') do
  local stop = start + tonumber(size) - 1
  local d = string.find(blob, '\\n', start, true)
  local a = string.find(blob, '\\n', d + 1, true)
  local b = string.find(blob, '\\n', a + 1, true)
  local c = string.find(blob, '\\n', b + 1, true)
  redis.call('XADD', KEYS[1], '*', 'id', string.sub(blob, d + 1, a - 1),
    'n', string.sub(blob, a + 1, b - 1), 'headers', string.sub(blob, b + 1, c - 1),
    'body', string.sub(blob, c + 1, stop))
  start = stop + 1
end
"""

ONE_ARGUMENT = """
local blob, start = ARGV[2], 1
for size in string.gmatch(ARGV[1], '%d+') do
  local stop = start + tonumber(size) - 1
  local d = string.find(blob, '\\n', start, true)
  redis.call('XADD', KEYS[1], '*', 'm', string.sub(blob, d + 1, stop))
  start = stop + 1
end
"""

BODY = (
    b'{"v":1,"id":"2cbb753203364c90916c20727c331a1b","task":"bench.noop_alo",'
    b'"args":["run-0000000000",10000],"kwargs":{},"attempt":1,"queue":"default",'
    b'"created_at":"2026-01-01T00:00:00.000000+00:00","eta":null}'
)
STREAM = "chicory-layout:stream"
STEPS = ("enqueue script", "XREADGROUP", "ack")


class Meter:
    """Runs one variant against Redis and reads ``redis-server``'s CPU time."""

    def __init__(self, client: redis.Redis, server: psutil.Process) -> None:
        self.client = client
        self.server = server
        self.ack_sha = client.script_load(ACK.source)

    def cpu(self) -> float:
        """``redis-server``'s user + system CPU seconds so far."""
        times = self.server.cpu_times()
        return float(times.user + times.system)

    def run(
        self, enqueue_sha: str, one_argument: bool, plain_ack: bool, messages: int
    ) -> tuple[float, ...]:
        """Add, read and ack ``messages``; ``redis-server`` CPU us per message per step.

        ``one_argument``: the enqueue script takes its batch in one argument (the messages
        back to back, their lengths in another), not one argument per message.
        ``plain_ack``: ack with plain ``XACK`` + ``XDEL``, not the ``ack`` script.
        """
        client = self.client
        client.delete(STREAM)
        client.xgroup_create(STREAM, "g", id="0", mkstream=True)
        packed = [b"%032x\n0\n{}\n%s" % (i, BODY) for i in range(messages)]
        marks = [self.cpu()]
        for start in range(0, messages, 500):
            chunk = packed[start : start + 500]
            if one_argument:
                sizes = " ".join(str(len(m) + 1) for m in chunk)
                blob = b"".join(b"\n" + m for m in chunk)
                client.evalsha(enqueue_sha, 2, STREAM, "unused", sizes, blob)
            else:
                client.evalsha(enqueue_sha, 2, STREAM, "unused", len(chunk), *chunk)
        marks.append(self.cpu())
        batches: list[list[bytes]] = []
        while reply := client.xreadgroup("g", "c", {STREAM: ">"}, count=256):
            # A map of stream name to entries (RESP3), or a list of pairs (RESP2).
            [(_, entries)] = reply.items() if isinstance(reply, dict) else reply
            batches.append([entry_id for entry_id, _ in entries])
        marks.append(self.cpu())
        for ids in batches:
            if plain_ack:
                pipe = client.pipeline(transaction=False)
                pipe.xack(STREAM, "g", *ids)
                pipe.xdel(STREAM, *ids)
                pipe.execute()
            else:
                client.evalsha(self.ack_sha, 1, STREAM, "g", "c", ids[0], ids[-1], b" ".join(ids))
        marks.append(self.cpu())
        client.delete(STREAM)
        return tuple((b - a) / messages * 1e6 for a, b in itertools.pairwise(marks))


def main() -> int:
    """Measure the variants in alternating rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = "redis://127.0.0.1:6379/13"
    pid = redis_pid(url)
    if pid is None:
        raise SystemExit("the redis-server at 127.0.0.1:6379 must run on this machine")
    client = redis.Redis.from_url(url)
    client.set_response_callback("XREADGROUP", lambda response, **_: response)
    meter = Meter(client, psutil.Process(pid))
    four, one = client.script_load(FOUR_FIELDS), client.script_load(ONE_ARGUMENT)
    packed = client.script_load(ENQUEUE.source)
    variants = {
        "four fields": (four, True, False),
        "packed, one argument": (one, True, False),
        "packed": (packed, False, False),
        "packed, plain ack": (packed, False, True),
    }
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, (sha, one_argument, plain_ack) in variants.items():
                results[name].append(meter.run(sha, one_argument, plain_ack, args.messages))
    finally:
        client.delete(STREAM)
        client.close()
    print("redis-server CPU per message, us: median of the rounds (min-max)")
    for name, rows in results.items():
        cells = []
        for index, step in enumerate(STEPS):
            values = [row[index] for row in rows]
            cells.append(
                f"{step} {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            )
        print(f"  {name:21s} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
