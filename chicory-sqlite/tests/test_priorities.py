"""Priorities on the SQLite broker beyond the conformance suite: a file of the first schema
version upgrades in place (its messages keep the priorities of their headers), and a
retried or replayed message keeps its priority."""

from __future__ import annotations

import json
import sqlite3
import time

from chicory.priority import PRIORITY_HEADER
from chicory_sqlite.broker import SqliteBroker
from chicory_sqlite.schema import SCHEMA, SCHEMA_VERSION


async def _bodies(broker: SqliteBroker, queue: str, count: int) -> list[bytes]:
    async with broker.consume([queue], prefetch=count) as consumer:
        got = await consumer.fetch(count, timeout=5)
        await consumer.ack_many(got)
        return [d.body for d in got]


async def test_a_version_1_file_upgrades_with_the_priorities_of_its_messages(
    database: str,
) -> None:
    """A file written before priorities (version 1) gets the column and index on first
    open; a message whose header held a valid priority is served by it, a malformed one
    counts as 0."""
    with sqlite3.connect(database) as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO chicory_meta (key, value) VALUES ('schema', '1')")
        for body, headers in (
            (b"plain", {}),
            (b"bad", {PRIORITY_HEADER: "12"}),
            (b"high", {PRIORITY_HEADER: "7"}),
        ):
            conn.execute(
                "INSERT INTO chicory_messages (queue, body, headers, available_at)"
                " VALUES ('q', ?, ?, ?)",
                (body, json.dumps(headers), time.time()),
            )
    async with SqliteBroker(database) as broker:
        assert await _bodies(broker, "q", 3) == [b"high", b"plain", b"bad"]
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT value FROM chicory_meta").fetchone()[0] == str(SCHEMA_VERSION)


async def test_a_retried_and_a_replayed_message_keep_their_priority(database: str) -> None:
    """The replacement published by ``retry`` and a replayed dead letter are ranked by the
    ``chicory-priority`` header they carry."""
    async with SqliteBroker(database) as broker:
        await broker.publish("q", b"urgent", {PRIORITY_HEADER: "8"})
        await broker.publish("q", b"doomed", {PRIORITY_HEADER: "6"})
        async with broker.consume(["q"], prefetch=2) as consumer:
            urgent, doomed = await consumer.fetch(2, timeout=5)
            await urgent.retry(b"urgent-2", urgent.headers, not_before=None)
            await doomed.dead_letter("for the test")
        await broker.publish("q", b"plain")
        (letter,) = await broker.dead_letters("q")
        assert await broker.replay_dead_letter("q", letter.id)
        assert await _bodies(broker, "q", 3) == [b"urgent-2", b"doomed", b"plain"]
