"""What a stream entry's layout costs Redis: four fields per message, or one packed field.

Usage (from the repository root, Redis on 127.0.0.1:6379 running on this machine; only
keys under ``chicory-layout:`` in database 13 are touched, and deleted at the end)::

    .venv/bin/python benchmarks/layout.py [--messages N] [--rounds N]

For each layout, ``--messages`` entries are added by a batch script shaped like the broker's
``enqueue`` (500 messages per call, back to back in one argument), then read with
``XREADGROUP COUNT 256``; the CPU time of the ``redis-server`` process (psutil) per message
is printed for each step, for every round, in alternation. The *packed* script is the
broker's own (:data:`chicory_redis.scripts.ENQUEUE`); the *four fields* one is the layout
it replaced, kept here to measure against.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import psutil  # type: ignore[import-untyped]
import redis
from common import redis_pid

from chicory_redis.scripts import ENQUEUE

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

BODY = (
    b'{"v":1,"id":"2cbb753203364c90916c20727c331a1b","task":"bench.noop_alo",'
    b'"args":["run-0000000000",10000],"kwargs":{},"attempt":1,"queue":"default",'
    b'"created_at":"2026-01-01T00:00:00.000000+00:00","eta":null}'
)
STREAM = "chicory-layout:stream"


def _measure(
    client: redis.Redis, server: psutil.Process, sha: str, messages: int
) -> tuple[float, float]:
    """Add ``messages`` with the script ``sha``, then read them all; CPU us per message."""

    def cpu() -> float:
        times = server.cpu_times()
        return float(times.user + times.system)

    client.delete(STREAM)
    client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    packed = [b"\n%032x\n0\n{}\n%s" % (i, BODY) for i in range(messages)]
    before = cpu()
    for start in range(0, messages, 500):
        chunk = packed[start : start + 500]
        client.evalsha(
            sha, 2, STREAM, "unused", " ".join(str(len(m)) for m in chunk), b"".join(chunk)
        )
    added = cpu()
    while client.xreadgroup("g", "c", {STREAM: ">"}, count=256):
        pass
    read = cpu()
    client.delete(STREAM)
    return (added - before) / messages * 1e6, (read - added) / messages * 1e6


def main() -> int:
    """Measure both layouts in alternating rounds and print the medians."""
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
    server = psutil.Process(pid)
    layouts: dict[str, Callable[[], tuple[float, float]]] = {}
    for name, source in (("four fields", FOUR_FIELDS), ("packed", ENQUEUE.source)):
        sha = client.script_load(source)
        layouts[name] = lambda sha=sha: _measure(client, server, sha, args.messages)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
    try:
        for _ in range(args.rounds):
            for name, measure in layouts.items():
                results[name].append(measure())
    finally:
        client.delete(STREAM)
        client.close()
    print("redis-server CPU per message, us (median of rounds; min-max)")
    for name, rows in results.items():
        cells = []
        for step, values in (
            ("enqueue script", [r[0] for r in rows]),
            ("XREADGROUP", [r[1] for r in rows]),
        ):
            cells.append(
                f"{step} {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
            )
        print(f"  {name:12s} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
