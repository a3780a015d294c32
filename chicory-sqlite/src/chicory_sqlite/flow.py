"""Rate-limit turns and concurrency permits in the SQLite file: the ``flow_control``
capability (:mod:`chicory.flow`).

One table, ``chicory_flow``, holds a row per start counted in a rate limit's window
(``kind='start'``), per turn in its waiting line (``'turn'``), for the end of the line
(``'line'``) and per concurrency permit (``'permit'``, ``at`` its expiry). Each operation is
one ``BEGIN IMMEDIATE`` transaction, so every process sharing the file sees one limit, timed
by this host's clock like the leases. The rules are the memory broker's, in SQL.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, TypeVar

from chicory.flow import turn_slack

__all__ = ["TURN_GRACE", "SqliteFlowMethods"]

T = TypeVar("T")

TURN_GRACE: Final = 3600.0
"""Seconds after its time that an unused turn is dropped."""


def take_turn(
    conn: sqlite3.Connection, key: str, holder: str, limit: int, period: float, now: float
) -> float:
    """See :meth:`chicory.flow.FlowControl.take_turn`."""
    conn.execute(
        "DELETE FROM chicory_flow WHERE key = ? AND kind = 'turn' AND at < ?",
        (key, now - TURN_GRACE),
    )
    conn.execute(
        "DELETE FROM chicory_flow WHERE key = ? AND kind = 'start' AND at <= ?",
        (key, now - period),
    )
    row = conn.execute(
        "SELECT at FROM chicory_flow WHERE key = ? AND kind = 'turn' AND holder = ?",
        (key, holder),
    ).fetchone()
    turn = None if row is None else float(row[0])
    if turn is not None:
        if turn > now:
            return turn - now
        conn.execute(
            "DELETE FROM chicory_flow WHERE key = ? AND kind = 'turn' AND holder = ?",
            (key, holder),
        )
    row = conn.execute(
        "SELECT at FROM chicory_flow WHERE key = ? AND kind = 'line'", (key,)
    ).fetchone()
    line = 0.0 if row is None else float(row[0])
    starts = [
        float(at)
        for (at,) in conn.execute(
            "SELECT at FROM chicory_flow WHERE key = ? AND kind = 'start' ORDER BY at", (key,)
        )
    ]
    if (turn is not None or line <= now) and len(starts) < limit:
        at = now if turn is None else max(turn, now - turn_slack(period / limit))
        conn.execute(
            "INSERT OR REPLACE INTO chicory_flow (key, kind, holder, at) VALUES (?, 'start', ?, ?)",
            (key, f"{holder} {now!r} {len(starts)}", at),
        )
        return 0.0
    at = max(line, now)
    if len(starts) >= limit:
        at = max(at, starts[len(starts) - limit] + period)
    conn.execute(
        "INSERT OR REPLACE INTO chicory_flow (key, kind, holder, at) VALUES (?, 'turn', ?, ?)",
        (key, holder, at),
    )
    conn.execute(
        "INSERT OR REPLACE INTO chicory_flow (key, kind, holder, at) VALUES (?, 'line', '', ?)",
        (key, at + period / limit),
    )
    return at - now


def _drop_expired(conn: sqlite3.Connection, key: str, now: float) -> None:
    conn.execute(
        "DELETE FROM chicory_flow WHERE key = ? AND kind = 'permit' AND at <= ?", (key, now)
    )


def acquire_permit(
    conn: sqlite3.Connection, key: str, holder: str, limit: int, ttl: float, now: float
) -> bool:
    """See :meth:`chicory.flow.FlowControl.acquire_permit`."""
    _drop_expired(conn, key, now)
    held = conn.execute(
        "SELECT count(*), sum(holder = ?) FROM chicory_flow WHERE key = ? AND kind = 'permit'",
        (holder, key),
    ).fetchone()
    if not held[1] and held[0] >= limit:
        return False
    conn.execute(
        "INSERT OR REPLACE INTO chicory_flow (key, kind, holder, at) VALUES (?, 'permit', ?, ?)",
        (key, holder, now + ttl),
    )
    return True


def renew_permits(
    conn: sqlite3.Connection, key: str, holders: Sequence[str], ttl: float, now: float
) -> None:
    """See :meth:`chicory.flow.FlowControl.renew_permits`."""
    _drop_expired(conn, key, now)
    conn.executemany(
        "UPDATE chicory_flow SET at = ? WHERE key = ? AND kind = 'permit' AND holder = ?",
        [(now + ttl, key, holder) for holder in holders],
    )


def release_permit(conn: sqlite3.Connection, key: str, holder: str) -> None:
    """See :meth:`chicory.flow.FlowControl.release_permit`."""
    conn.execute(
        "DELETE FROM chicory_flow WHERE key = ? AND kind = 'permit' AND holder = ?",
        (key, holder),
    )


class SqliteFlowMethods:
    """The ``flow_control`` methods of :class:`~chicory_sqlite.broker.SqliteBroker`."""

    if TYPE_CHECKING:

        async def _write(self, call: Callable[[sqlite3.Connection], T]) -> T: ...

    async def take_turn(self, key: str, holder: str, *, limit: int, period: float) -> float:
        """Ask to start one run under the rate limit ``key`` (see
        :meth:`chicory.flow.FlowControl.take_turn`).

        Raises:
            BrokerConnectionError: the database could not be written.
        """
        return await self._write(
            lambda conn: take_turn(conn, key, holder, limit, period, time.time())
        )

    async def acquire_permit(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Take one of the ``limit`` permits of ``key`` for ``holder`` (see
        :meth:`chicory.flow.FlowControl.acquire_permit`).

        Raises:
            BrokerConnectionError: the database could not be written.
        """
        return await self._write(
            lambda conn: acquire_permit(conn, key, holder, limit, ttl, time.time())
        )

    async def renew_permits(self, key: str, holders: Sequence[str], *, ttl: float) -> None:
        """Renew the permits of ``key`` held by ``holders`` for ``ttl`` seconds."""
        await self._write(lambda conn: renew_permits(conn, key, holders, ttl, time.time()))

    async def release_permit(self, key: str, holder: str) -> None:
        """Free the permit of ``key`` held by ``holder``."""
        await self._write(lambda conn: release_permit(conn, key, holder))
