"""Flow limits and priorities on PostgreSQL beyond the conformance suite.

* Two ``chicory worker`` processes share a rate limit and a concurrency limit through the
  database. They run ``tests/limits_app.py``, whose tasks record what they observe in Redis
  (start times by the Redis server's clock, runs inside at once), so the checks count
  events rather than time the test itself.
* A retried and a replayed message keep their priority; a schema at version 4 upgrades
  with the priorities of the messages it holds; the claim stays index scans with and
  without priorities (``EXPLAIN``).

Each test works in a schema of its own.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from chicory import Chicory
from chicory.broker import OutgoingMessage
from chicory.priority import PRIORITY_HEADER
from chicory_postgres.broker import PostgresBroker
from chicory_postgres.schema import MIGRATIONS
from e2e_support import eventually
from processes import WorkerProcess, delete_keys, worker_process

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema name of this test's own, dropped afterwards."""
    name = f"chicory_fp_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def keys() -> Iterator[str]:
    """A Redis key prefix of this test's own, deleted afterwards."""
    prefix = f"chicory-pgflow-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_keys(prefix)


def producer(url: str) -> Chicory:
    """The producer side of ``limits_app.py``, with the same limits."""
    app = Chicory(url)

    @app.task(name="flow.rated", rate_limit="10/s")
    async def rated(n: int) -> None: ...

    @app.task(name="flow.capped", concurrency_limit=3)
    async def capped(n: int) -> None: ...

    @app.task(name="flow.free")
    async def free(n: int) -> None: ...

    @app.task(name="flow.slow", concurrency_limit=2)
    async def slow(n: int) -> None: ...

    return app


def workers(
    stack: ExitStack, url: str, keys: str, tmp_path: Path, count: int = 2
) -> list[WorkerProcess]:
    """``count`` worker processes of 8 runners each on ``url``."""
    env = {"CHICORY_TEST_KEYS": keys, "CHICORY_TEST_REDIS": REDIS, "CHICORY_TEST_RATE": "10/s"}
    return [
        stack.enter_context(
            worker_process(
                url, tmp_path / f"runs{n}", "--concurrency", "8", app="limits_app:app", env=env
            )
        )
        for n in range(count)
    ]


@pytest.mark.slow
async def test_a_rate_limit_holds_across_two_worker_processes(
    postgres_url: str, schema: str, keys: str, tmp_path: Path
) -> None:
    """10/s shared by two processes of 8 runners: 40 starts, each once; the busiest 3 s
    hold at most 30 (+10%) and not far fewer (the limit is not stricter than asked)."""
    url = f"{postgres_url}?schema={schema}"
    app = producer(url)
    async with app:
        await app.tasks["flow.rated"].delay_many([(n,) for n in range(40)])
    client = redis.Redis.from_url(REDIS)
    try:
        with ExitStack() as stack:
            workers(stack, url, keys, tmp_path)
            await eventually(lambda: client.llen(f"{keys}:starts") >= 40, timeout=120)
        starts = sorted(int(x) / 1e6 for x in client.lrange(f"{keys}:starts", 0, -1))
    finally:
        client.close()
    assert len(starts) == 40, "a rate-limited task ran twice or was lost"

    def most_within(seconds: float) -> int:
        return max(
            sum(1 for t in starts[i:] if t < start + seconds) for i, start in enumerate(starts)
        )

    busiest = most_within(3.0)
    assert busiest <= 33, f"{busiest} starts within 3 s under a limit of 10/s"
    assert busiest >= 20, f"only {busiest} starts in the busiest 3 s under a limit of 10/s"


@pytest.mark.slow
async def test_a_concurrency_limit_holds_across_two_worker_processes(
    postgres_url: str, schema: str, keys: str, tmp_path: Path
) -> None:
    """Limit 3 shared by two processes of 8 runners: never more than 3 inside at once, the
    unlimited tasks all run meanwhile, and every permit is released afterwards."""
    url = f"{postgres_url}?schema={schema}"
    app = producer(url)
    async with app:
        await app.tasks["flow.capped"].delay_many([(n,) for n in range(40)])
        await app.tasks["flow.free"].delay_many([(n,) for n in range(10)])
    client = redis.Redis.from_url(REDIS)
    try:
        with ExitStack() as stack:
            workers(stack, url, keys, tmp_path)
            await eventually(lambda: client.llen(f"{keys}:seen") >= 40, timeout=120)
            await eventually(lambda: _permits(postgres_url, schema) == 0, timeout=30)
        seen = [int(x) for x in client.lrange(f"{keys}:seen", 0, -1)]
        free_runs = int(client.get(f"{keys}:free") or 0)
    finally:
        client.close()
    assert len(seen) == 40
    assert max(seen) <= 3, f"{max(seen)} runs at once under concurrency_limit=3"
    assert max(seen) == 3, "the limit was never reached: the workers did not run in parallel"
    assert free_runs == 10


@pytest.mark.slow
async def test_a_killed_workers_permits_free_themselves(
    postgres_url: str, schema: str, keys: str, tmp_path: Path
) -> None:
    """A worker killed while its runs hold both permits of a task (1 s leases) leaves them
    to expire: a second worker, started after the kill, runs every task, those two again."""
    url = f"{postgres_url}?schema={schema}&lease_seconds=1"
    app = producer(url)
    async with app:
        await app.tasks["flow.slow"].delay_many([(n,) for n in range(4)])
    client = redis.Redis.from_url(REDIS)
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with ExitStack() as first:
            (doomed,) = workers(first, url, keys, tmp_path / "a", count=1)
            await eventually(lambda: client.llen(f"{keys}:slow-started") >= 2, timeout=60)
            doomed.signal(signal.SIGKILL)
            doomed.wait(10)
        assert client.llen(f"{keys}:slow-done") == 0, "the worker must die holding permits"
        assert _permits(postgres_url, schema) == 2
        with ExitStack() as second:
            workers(second, url, keys, tmp_path / "b", count=1)
            await eventually(lambda: client.llen(f"{keys}:slow-done") >= 4, timeout=90)
        done = sorted(int(x) for x in client.lrange(f"{keys}:slow-done", 0, -1))
    finally:
        client.close()
    assert done == [0, 1, 2, 3]


def _permits(url: str, schema: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        statement = sql.SQL("SELECT count(*) FROM {}.flow_permits").format(sql.Identifier(schema))
        row = conn.execute(statement).fetchone()
    return int(row[0]) if row else -1


async def _bodies(broker: PostgresBroker, queue: str, count: int) -> list[bytes]:
    async with broker.consume([queue], prefetch=count) as consumer:
        got = await consumer.fetch(count, timeout=5)
        await consumer.ack_many(got)
        return [d.body for d in got]


async def test_a_retried_and_a_replayed_message_keep_their_priority(
    postgres_url: str, schema: str
) -> None:
    """The replacement published by ``retry`` and a replayed dead letter are ranked by the
    ``chicory-priority`` header they carry."""
    async with PostgresBroker.from_url(f"{postgres_url}?schema={schema}") as broker:
        await broker.publish("q", b"urgent", {PRIORITY_HEADER: "8"})
        await broker.publish("q", b"doomed", {"note": 'café ✓ "x"', PRIORITY_HEADER: "6"})
        async with broker.consume(["q"], prefetch=2) as consumer:
            urgent, doomed = await consumer.fetch(2, timeout=5)
            await urgent.retry(b"urgent-2", urgent.headers, not_before=None)
            await doomed.dead_letter("for the test")
        await broker.publish("q", b"plain")
        (letter,) = await broker.dead_letters("q")
        assert await broker.replay_dead_letter("q", letter.id)
        assert await _bodies(broker, "q", 3) == [b"urgent-2", b"doomed", b"plain"]


async def test_a_version_4_schema_upgrades_with_the_priorities_of_its_messages(
    postgres_url: str, schema: str
) -> None:
    """Migration 5 sets the priority of the messages already there from their headers
    (written as orjson writes them, or as migration 4 converted jsonb); a malformed one
    counts as 0."""
    ident = sql.Identifier(schema)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
        await conn.execute(
            sql.SQL("CREATE TABLE {}.schema_version (version integer)").format(ident)
        )
        for number in range(1, 5):
            await conn.execute(sql.SQL(MIGRATIONS[number - 1]).format(s=ident))
            await conn.execute(
                sql.SQL("INSERT INTO {}.schema_version VALUES (%s)").format(ident), (number,)
            )
        for n, (body, headers) in enumerate(
            (
                (b"plain", b"{}"),
                (b"bad", json.dumps({PRIORITY_HEADER: "12"}).encode()),
                (b"spaced", json.dumps({"a": "b", PRIORITY_HEADER: "4"}).encode()),
                (b"tight", json.dumps({PRIORITY_HEADER: "9"}, separators=(",", ":")).encode()),
            )
        ):
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.messages (id, queue, body, headers, run_at) "
                    "VALUES (gen_random_uuid(), 'q', %s, %s, now() - %s * interval '1 ms')"
                ).format(ident),
                (body, headers, 10 - n),
            )
    async with PostgresBroker.from_url(f"{postgres_url}?schema={schema}") as broker:
        assert await _bodies(broker, "q", 4) == [b"tight", b"spaced", b"plain", b"bad"]


async def test_the_claim_is_index_scans_with_and_without_priorities(
    postgres_url: str, schema: str
) -> None:
    """With thousands of ready and delayed messages at priority 0 and above, the claim's
    plan reads ``messages`` through its indexes only: priority 0 through
    ``messages_ready``, the others through ``messages_ranked``."""
    async with PostgresBroker.from_url(f"{postgres_url}?schema={schema}") as broker:
        later = datetime.now(UTC) + timedelta(hours=1)
        for headers, due in (({}, None), ({}, later), ({PRIORITY_HEADER: "5"}, later)):
            batch = [OutgoingMessage(body=b"x", headers=headers, not_before=due)] * 1000
            for _ in range(3):
                await broker.publish_many("q", batch)
        await broker.publish("q", b"y", {PRIORITY_HEADER: "7"})
        plan = await _plan(broker, "ANALYZE {s}.messages")
    assert "Seq Scan" not in plan, plan
    assert "messages_ready" in plan, plan
    assert "messages_ranked" in plan, plan


async def _plan(broker: PostgresBroker, analyze: str) -> str:
    params: dict[str, Any] = {
        "queues": ["q"],
        "q0": "q",
        "limit": 10,
        "lease": 30.0,
        "max_deliveries": None,
    }
    async with broker.pool.connection() as conn:
        await conn.execute(broker.sql.fill(analyze))
        cur = await conn.execute("EXPLAIN " + broker.sql.claim(1), params)
        return "\n".join(str(row[0]) for row in await cur.fetchall())
