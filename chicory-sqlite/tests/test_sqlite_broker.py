"""What the SQLite broker promises beyond the conformance suite: its URLs, its registration,
WAL on the file, database work off the event loop, and wake-ups from other connections."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from chicory import Chicory, Worker
from chicory.errors import BrokerConnectionError, ConfigurationError
from chicory.plugins import BackendKind, PluginHost
from chicory_sqlite.broker import SqliteBroker
from chicory_sqlite.options import parse_sqlite_url
from chicory_sqlite.results import SqliteResultBackend
from chicory_sqlite.schema import SCHEMA_VERSION
from e2e_support import eventually, serving


def test_urls_follow_sqlalchemy() -> None:
    assert parse_sqlite_url("sqlite:///queue.db")[0] == "queue.db"
    assert parse_sqlite_url("sqlite:////var/lib/q.db")[0] == "/var/lib/q.db"
    path, connection, broker = parse_sqlite_url(
        "sqlite:////tmp/q.db?lease_seconds=5&busy_timeout=1&dead_letter_max_age=none"
    )
    assert (path, connection, broker) == (
        "/tmp/q.db",
        {"busy_timeout": 1.0},
        {"lease_seconds": 5.0, "dead_letter_max_age": None},
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite://host/q.db", "names a host"),
        ("sqlite://", "needs a database file"),
        ("sqlite:///:memory:", "needs a database file"),
        ("sqlite:///q.db?lease=5", "unknown option 'lease'"),
        ("sqlite:///q.db?lease_seconds=soon", "not a valid number"),
        ("sqlite:///q.db?synchronous=off", "synchronous must be one of"),
        ("redis://localhost", "expected a sqlite:// URL"),
    ],
)
def test_bad_urls_say_what_to_do(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        SqliteBroker.from_url(url)


def test_it_is_registered_from_its_distribution() -> None:
    host = PluginHost()
    for kind in (BackendKind.BROKER, BackendKind.RESULT_BACKEND):
        (item,) = [i for i in host.installed(kind) if i.spec.name == "sqlite"]
        assert item.spec.schemes == ("sqlite",)
        assert item.distribution is not None
        assert item.distribution.startswith("chicory-sqlite")


async def test_one_url_gives_broker_and_results_a_worker_runs_on(database: str) -> None:
    app = Chicory(broker=f"sqlite:///{database}?lease_seconds=5")
    assert isinstance(app.broker, SqliteBroker)
    assert isinstance(app.backend, SqliteResultBackend)

    @app.task(name="sqlite.add")
    async def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(app, concurrency=2, heartbeat_interval=0, fetch_timeout=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        results = await add.delay_many([(n, n) for n in range(20)])
        assert [await r.get(timeout=20) for r in results] == [2 * n for n in range(20)]
        worker.stop()
    await app.close()


async def test_the_file_is_in_wal_mode(database: str) -> None:
    async with SqliteBroker(database) as broker:
        await broker.publish("q", b"x")
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM chicory_meta").fetchone()[0] == str(SCHEMA_VERSION)


async def test_a_file_that_is_no_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the tables you are looking for\n" * 100)
    with pytest.raises(BrokerConnectionError, match="is it a SQLite database"):
        await SqliteBroker(str(path)).connect()
    with pytest.raises(BrokerConnectionError, match="check that the directory exists"):
        await SqliteBroker(str(tmp_path / "missing" / "q.sqlite3")).connect()


async def test_a_locked_database_blocks_a_thread_not_the_event_loop(database: str) -> None:
    """Another process holds the write lock: the broker's publish waits for it, and the
    event loop keeps running other tasks (lease renewals, heartbeats) meanwhile."""
    async with SqliteBroker(database, busy_timeout=30) as broker:
        other = sqlite3.connect(database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        ticks = 0
        published = anyio.Event()

        async def publish() -> None:
            await broker.publish("q", b"x")
            published.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            while ticks < 20:  # the loop turns while the publish waits for the lock
                await anyio.sleep(0.01)
                ticks += 1
            assert not published.is_set()
            other.execute("COMMIT")
            await published.wait()
        other.close()
        assert (await broker.counts("q")).ready == 1


async def test_a_lock_held_past_busy_timeout_is_a_clear_error(database: str) -> None:
    async with SqliteBroker(database, busy_timeout=0.2) as broker:
        other = sqlite3.connect(database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(BrokerConnectionError, match="raise busy_timeout"):
                await broker.publish("q", b"x")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await broker.counts("q")).ready == 0


async def test_another_connections_publish_wakes_a_waiting_fetch(database: str) -> None:
    """The consumer's connection did not write, so only ``PRAGMA data_version`` can tell it
    that a message arrived: the fetch returns it long before its timeout."""
    async with (
        SqliteBroker(database) as waiting,
        SqliteBroker(database) as publishing,
        waiting.consume(["q"], prefetch=1) as consumer,
    ):

        async def publish_later() -> None:
            await anyio.sleep(0.2)
            await publishing.publish("q", b"hello")

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_later)
            with anyio.fail_after(60):
                (delivery,) = await consumer.fetch(1, timeout=120)
        assert delivery.body == b"hello"
        assert waiting.database.watch.polls > 0
        await delivery.ack()


def test_the_plugin_module_imports_no_sqlite(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys, chicory_sqlite.plugin; print('sqlite3' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "False"


async def test_producers_on_two_connections_enqueue_a_key_once_and_the_worker_frees_it(
    database: str,
) -> None:
    """Two apps on the file (two connections, as two processes would have) race to enqueue
    one key: one run is enqueued, every caller gets its handle, and the worker frees the key
    once the run succeeded."""
    url = f"sqlite:///{database}"
    apps = [Chicory(url, load_entry_points=True) for _ in range(2)]
    ran: list[int] = []
    for one in apps:

        @one.task(name="sqlite.unique")
        async def job(n: int) -> int:
            ran.append(n)
            return n

    results = []

    async def produce(n: int) -> None:
        results.append(await apps[n % 2].tasks["sqlite.unique"].apply_async((n,), unique_key="k"))

    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(produce, n)
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.id for r in results}) == 1
    broker = await apps[0].connected_broker()
    assert isinstance(broker, SqliteBroker)
    assert await broker.unique_holder("default", "k") == results[0].id

    async def freed() -> bool:
        return await broker.unique_holder("default", "k") is None

    async with serving(apps[1]):
        assert await results[0].get(timeout=20) in range(10)
        await eventually(freed, timeout=20)
    assert len(ran) == 1
    assert not (await apps[0].tasks["sqlite.unique"].apply_async((99,), unique_key="k")).duplicate
    for one in apps:
        await one.close()


async def test_closing_the_result_backend_wakes_its_waiters_with_none(database: str) -> None:
    backend = SqliteResultBackend(database)
    await backend.connect()
    got: list[bytes | None] = []

    async def waiter() -> None:
        got.append(await backend.wait("never", timeout=60))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(waiter)
            await anyio.sleep(0.2)
            await backend.close()
    assert got == [None] * 5
