"""How many Redis commands a task costs: ``INFO commandstats`` around a drain.

Usage (from the repository root; starts its own ``redis-server`` on ``--port``, with no
persistence, and stops it at the end)::

    .venv/bin/python benchmarks/commands.py [--tasks N] [--port N] [--json]

A count of commands does not depend on how loaded the machine is, so it can be compared
between two versions of the broker on any machine. Each phase resets the server's command
statistics (``CONFIG RESETSTAT``), runs, and reads ``INFO commandstats``; commands run by
a Lua script count as well as the ``EVALSHA`` that ran them. The phases, on a fresh queue:

* ``publish``: ``--tasks`` messages, one ``publish`` each;
* ``drain 1``: a consumer with prefetch 1 fetches one and acks it, until all are done;
* ``publish_many``: ``--tasks`` messages in one ``publish_many`` call;
* ``drain 100``: a consumer with prefetch 100 fetches up to 100 and acks them with one
  ``ack_many``, until all are done;
* the same four with priorities (0, 1 and 2 in turn) when the broker declares them.

The consumer's maintenance (moving due delayed messages, reclaiming, forgetting idle
members) runs once when it starts: its intervals are set to an hour, so a phase's count
does not depend on how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable

import redis

from chicory.broker import OutgoingMessage
from chicory.priority import PRIORITY_HEADER
from chicory_redis.broker import RedisBroker

Phase = Callable[[RedisBroker, str], Awaitable[None]]


def start_server(port: int, workdir: str) -> subprocess.Popen[bytes]:
    """Start a private ``redis-server`` (no persistence) and wait until it answers."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit(f"redis-server on port {port} did not start")


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT`` (itself left out)."""
    stats = client.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    counts.pop("config|resetstat", None)
    counts.pop("config", None)
    return counts


def headers(n: int, ranked: bool) -> dict[str, str]:
    """No headers; with ``ranked``, priority 0, 1 or 2 in turn (0 as no header)."""
    level = n % 3 if ranked else 0
    return {PRIORITY_HEADER: str(level)} if level else {}


async def drain(broker: RedisBroker, queue: str, tasks: int, prefetch: int) -> None:
    """Fetch up to ``prefetch`` and ack them in one call, until ``tasks`` are done."""
    done = 0
    async with broker.consume([queue], prefetch=prefetch) as consumer:
        while done < tasks:
            got = await consumer.fetch(prefetch, timeout=5.0)
            if not got:
                raise SystemExit(f"drain stalled after {done} of {tasks}")
            if len(got) == 1:
                await got[0].ack()
            else:
                await consumer.ack_many(got)
            done += len(got)


def phases(tasks: int, ranked: bool) -> list[tuple[str, Phase]]:
    """The phases of one run (see the module docstring)."""

    async def publish(broker: RedisBroker, queue: str) -> None:
        for n in range(tasks):
            await broker.publish(queue, b"x" * 100, headers(n, ranked))

    async def publish_many(broker: RedisBroker, queue: str) -> None:
        await broker.publish_many(
            queue,
            [OutgoingMessage(body=b"x" * 100, headers=headers(n, ranked)) for n in range(tasks)],
        )

    async def drain_1(broker: RedisBroker, queue: str) -> None:
        await drain(broker, queue, tasks, 1)

    async def drain_100(broker: RedisBroker, queue: str) -> None:
        await drain(broker, queue, tasks, 100)

    suffix = " (priorities 0-2)" if ranked else ""
    return [
        (f"publish{suffix}", publish),
        (f"drain 1{suffix}", drain_1),
        (f"publish_many{suffix}", publish_many),
        (f"drain 100{suffix}", drain_100),
    ]


async def measure(port: int, tasks: int) -> dict[str, dict[str, int]]:
    """Run every phase against the server on ``port``; return each phase's counts."""
    client = redis.Redis(port=port)
    broker = RedisBroker.from_url(
        f"redis://127.0.0.1:{port}/0",
        key_prefix="chicory-commands",
        reclaim_interval=3600,
        delayed_poll_interval=3600,
        idle_consumer_ttl=3600,
    )
    results: dict[str, dict[str, int]] = {}
    async with broker:
        runs = [False, True] if broker.capabilities.priorities else [False]
        for ranked in runs:
            queue = f"commands-{int(ranked)}"
            for name, phase in phases(tasks, ranked):
                client.config_resetstat()
                await phase(broker, queue)
                results[name] = command_counts(client)
            await broker.delete_queue(queue)
    client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--port", type=int, default=6398)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="chicory-commands-")
    server = start_server(args.port, workdir)
    try:
        results = asyncio.run(measure(args.port, args.tasks))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    for name, counts in results.items():
        total = sum(counts.values())
        detail = ", ".join(f"{cmd} {n}" for cmd, n in sorted(counts.items()))
        print(f"{name:<32} {total:>7} commands, {total / args.tasks:6.3f} per task: {detail}")


if __name__ == "__main__":
    main()
