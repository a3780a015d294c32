"""One SQLite connection, used only off the event loop, and how its users learn of changes.

:class:`Database` owns one :mod:`sqlite3` connection. Every call on it runs in a worker
thread through :func:`anyio.to_thread.run_sync` with a capacity limiter of one, so calls on
one connection never overlap and a busy wait (another process holding the write lock, up to
``busy_timeout``) blocks that thread, never the event loop: lease renewals and heartbeats of
the same worker keep running. A call is not abandoned when its caller is cancelled: the
transaction it started is committed or rolled back before the cancellation is delivered.

Writes are one ``BEGIN IMMEDIATE`` transaction each: the write lock is taken at the start, so
two processes never both read and then both try to upgrade (SQLite's deadlock-prone
pattern); the loser waits up to ``busy_timeout`` for the lock.

Change detection (:class:`ChangeWatch`): a fetch with nothing to claim, or a result waiter,
sleeps on an in-process event that the same :class:`Database` sets after each of its own
commits. Commits of other connections (other processes, other brokers in this one) are seen
through ``PRAGMA data_version``, which changes when another connection committed (it reads
a counter in the WAL index in shared memory: a thread hop, not a query). Only while someone
waits, and once for every waiter of the connection, the write-ahead log's ``stat()`` is
looked at every ``poll_interval`` seconds on the loop (one system call), and
``data_version`` is read when the log changed, or every ``10 * poll_interval`` (0.1 s at
least) in case a change did not show in the ``stat()``.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio

from chicory.errors import ChicoryError, ConfigurationError
from chicory_sqlite.options import ConnectionOptions
from chicory_sqlite.schema import SCHEMA, SCHEMA_VERSION, UPGRADES

__all__ = ["ChangeWatch", "Database", "immediate"]

T = TypeVar("T")


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction: committed if the block ends, rolled back if it
    raises (for calls given to :meth:`Database.run` that write only sometimes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """A connection to one database file, used one call at a time off the event loop.

    Args:
        options: The file and how to open it.
        error: The error raised when the database cannot be used (the broker raises
            :class:`~chicory.errors.BrokerConnectionError`, the result backend
            :class:`~chicory.errors.ResultBackendError`).
        what: How messages name the owner (``"sqlite broker"``).
    """

    def __init__(self, options: ConnectionOptions, *, error: type[ChicoryError], what: str) -> None:
        self.options = options
        self._error = error
        self._what = what
        self._conn: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self.watch = ChangeWatch(self, options.poll_interval, f"{options.path}-wal")

    @property
    def is_open(self) -> bool:
        """Whether the connection is open."""
        return self._conn is not None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the file (creating it and the schema if needed). Idempotent.

        Raises:
            ConfigurationError: the file cannot use WAL (say, on a network filesystem), or
                was written by a newer schema.
            ChicoryError: the ``error`` class given, when the file cannot be opened.
        """
        if self._conn is None:
            self._conn = await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
            self.watch.baseline = await self.run(_data_version)

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.options.path,
                timeout=self.options.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._error(
                f"the {self._what} cannot open {self.options.path!r}: {exc}; check that the "
                "directory exists and this process may write to it"
            ) from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigurationError(
                    f"{self.options.path!r} cannot use SQLite's write-ahead log (journal mode "
                    f"{mode!r}); put the database on a local filesystem (not NFS or SMB)"
                )
            conn.execute(f"PRAGMA synchronous={self.options.synchronous.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(self.options.busy_timeout * 1000)}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM chicory_meta WHERE key = 'schema'").fetchone()
            version = 1 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"{self.options.path!r} holds schema version {row[0]}, newer than this "
                    f"chicory-sqlite's {SCHEMA_VERSION}; upgrade chicory-sqlite"
                )
            for upgrade in UPGRADES[version - 1 :]:
                for statement in upgrade.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO chicory_meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(
                f"the {self._what} cannot use {self.options.path!r} ({exc}); is it a SQLite "
                "database, on a local filesystem, that this process may write to?"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Close the connection once the call in progress ended, and wake every waiter.
        Idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)
        self.watch.bump()

    # -- calls -----------------------------------------------------------------------------

    async def run(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``call(connection)`` on the connection's thread (reads; no transaction).

        Raises:
            ChicoryError: the ``error`` class given, when the database is closed, locked
                past ``busy_timeout`` or fails.
        """
        return await anyio.to_thread.run_sync(self._call, call, False, limiter=self._limiter)

    async def write(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``call(connection)`` in one ``BEGIN IMMEDIATE`` transaction, off the loop;
        wake this connection's waiters once it committed.

        Raises:
            ChicoryError: as :meth:`run`; nothing was written.
        """
        result = await anyio.to_thread.run_sync(self._call, call, True, limiter=self._limiter)
        self.watch.bump()
        return result

    def _call(self, call: Callable[[sqlite3.Connection], T], transaction: bool) -> T:
        conn = self._conn
        if conn is None:
            raise self._error(f"the {self._what} is not connected; use 'async with' first")
        try:
            if not transaction:
                return call(conn)
            with immediate(conn):
                return call(conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise self._error(
                    f"the {self._what} waited {self.options.busy_timeout} s for another "
                    f"process's write to {self.options.path!r} and gave up ({exc}); raise "
                    "busy_timeout, or look for a process holding a long transaction"
                ) from exc
            raise self._error(f"the {self._what} failed on {self.options.path!r}: {exc}") from exc
        except sqlite3.Error as exc:
            raise self._error(f"the {self._what} failed on {self.options.path!r}: {exc}") from exc


def _data_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA data_version").fetchone()[0]
    return version


class ChangeWatch:
    """Wakes the waiters of one :class:`Database` when its file changed.

    ``version`` counts the changes seen: this connection's own commits (:meth:`bump`) and
    other connections' commits (``PRAGMA data_version`` moved). A waiter reads ``version``
    before looking at the database and then calls :meth:`wait` with it, so a change between
    the look and the wait is never slept through.

    While anyone waits, one waiter at a time looks every ``poll_interval`` at the write-ahead
    log's ``stat()`` (inode, size, modification time: one system call, no thread, no SQLite
    call), and reads ``PRAGMA data_version`` on the connection's thread only when the log
    changed, or every ``verify_interval`` in case a change left the log's ``stat()`` as it
    was (a commit that rewrote the log from its start within the filesystem's timestamp
    granularity). An idle waiter therefore costs a timer and a ``stat()`` per interval.

    Args:
        database: The connection to poll.
        poll_interval: Seconds between two looks while anyone waits.
        wal_path: The write-ahead log file (the database path + ``-wal``).
    """

    def __init__(self, database: Database, poll_interval: float, wal_path: str) -> None:
        self.version = 0
        self.baseline: int | None = None
        self.polls = 0
        self.verifies = 0
        self._database = database
        self._interval = poll_interval
        self._verify_interval = max(10 * poll_interval, 0.1)
        self._wal_path = wal_path
        self._stamp: tuple[int, int, int] | None = None
        self._event = anyio.Event()
        self._polling = False
        self._last_poll = -math.inf
        self._last_verify = -math.inf

    def bump(self) -> None:
        """Record a change and wake every waiter."""
        self.version += 1
        self._event.set()
        self._event = anyio.Event()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return once ``version`` differs from ``seen``, or after ``timeout`` seconds.

        While waiting, the file is polled every ``poll_interval`` by one waiter at a time.
        Cancellation-safe.
        """
        deadline = anyio.current_time() + timeout
        while self.version == seen:
            now = anyio.current_time()
            left = deadline - now
            if left <= 0:
                return
            due = self._last_poll + self._interval
            if not self._polling and now >= due and self._database.is_open:
                await self._poll(now)
                continue
            pause = min(left, max(due - now, self._interval / 4))
            event = self._event
            with anyio.move_on_after(pause):
                await event.wait()

    def _wal_stamp(self) -> tuple[int, int, int] | None:
        """The log's inode, size and modification time, or ``None`` if it is not there."""
        try:
            st = os.stat(self._wal_path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    async def _poll(self, now: float) -> None:
        self._last_poll = now
        self.polls += 1
        stamp = self._wal_stamp()
        if stamp == self._stamp and now - self._last_verify < self._verify_interval:
            return
        self._stamp = stamp
        self._polling = True
        try:
            version = await self._database.run(_data_version)
        except ChicoryError:
            return  # closed meanwhile, or busy: the next poll tries again
        finally:
            self._polling = False
            self._last_verify = anyio.current_time()
        self.verifies += 1
        if version != self.baseline:
            self.baseline = version
            self.bump()
