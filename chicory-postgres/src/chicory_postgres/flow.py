"""Rate-limit turns and concurrency permits in PostgreSQL: the ``flow_control`` capability
(:mod:`chicory.flow`).

Every decision is one statement, timed by the server's clock, so every worker on every
machine shares one limit and one clock:

* ``take_turn`` and ``acquire_permit`` call the functions ``flow_take_turn`` and
  ``flow_acquire_permit`` (created by migration 5, :mod:`chicory_postgres.schema`). Each
  takes a transaction-scoped advisory lock on its key first, so two decisions on one key
  never interleave, and reads the clock after the lock (a decision that waited is timed
  when it is made). The rules are the memory broker's: a sliding window of counted starts
  (``flow_starts``), a waiting line of turns (``flow_turns``) with its end (``flow_lines``),
  and permits with an expiry (``flow_permits``) dropped when it passes.
* ``renew_permits`` and ``release_permit`` are one ``UPDATE`` / ``DELETE`` each: row locks
  are enough for them (a renewal never brings back an expired or released permit).

A permit's expiry is the broker's lease time, renewed by the worker with its leases, so a
killed worker's permits free themselves when its leases would. Each check costs one round
trip; a key's expired rows are deleted by its next check (its line end, one row, stays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from chicory.flow import turn_slack

if TYPE_CHECKING:
    from chicory_postgres.statements import Statements

__all__ = ["TURN_GRACE", "PostgresFlowMethods"]

TURN_GRACE: Final = 3600.0
"""Seconds after its time that an unused turn is dropped."""

_TAKE_TURN: Final = """
SELECT {s}.flow_take_turn(%(key)s, %(holder)s, %(limit)s, %(period)s, %(slack)s, %(grace)s)
"""

_ACQUIRE: Final = "SELECT {s}.flow_acquire_permit(%(key)s, %(holder)s, %(limit)s, %(ttl)s)"

_RENEW: Final = """
UPDATE {s}.flow_permits
SET expires_at = extract(epoch FROM clock_timestamp()) + %(ttl)s
WHERE key = %(key)s AND holder = ANY(%(holders)s)
  AND expires_at > extract(epoch FROM clock_timestamp())
"""

_RELEASE: Final = "DELETE FROM {s}.flow_permits WHERE key = %(key)s AND holder = %(holder)s"


class PostgresFlowMethods:
    """The ``flow_control`` methods of :class:`~chicory_postgres.broker.PostgresBroker`."""

    if TYPE_CHECKING:

        async def execute(self, statement: str, params: Mapping[str, Any], *, doing: str) -> int:
            """See :meth:`chicory_postgres.broker.PostgresBroker.execute`."""

        async def fetch_rows(
            self, statement: str, params: Mapping[str, Any], *, doing: str
        ) -> list[tuple[Any, ...]]:
            """See :meth:`chicory_postgres.broker.PostgresBroker.fetch_rows`."""

        sql: Statements

    async def take_turn(self, key: str, holder: str, *, limit: int, period: float) -> float:
        """Ask to start one run under the rate limit ``key`` (see
        :meth:`chicory.flow.FlowControl.take_turn`).

        Raises:
            BrokerConnectionError: PostgreSQL could not be reached.
        """
        rows = await self.fetch_rows(
            self.sql.fill(_TAKE_TURN),
            {
                "key": key,
                "holder": holder,
                "limit": limit,
                "period": float(period),
                "slack": turn_slack(period / limit),
                "grace": TURN_GRACE,
            },
            doing=f"taking a turn of {key!r}",
        )
        return max(0.0, float(rows[0][0]))

    async def acquire_permit(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Take one of the ``limit`` permits of ``key`` for ``holder`` (see
        :meth:`chicory.flow.FlowControl.acquire_permit`).

        Raises:
            BrokerConnectionError: PostgreSQL could not be reached.
        """
        rows = await self.fetch_rows(
            self.sql.fill(_ACQUIRE),
            {"key": key, "holder": holder, "limit": limit, "ttl": float(ttl)},
            doing=f"taking a permit of {key!r}",
        )
        return bool(rows[0][0])

    async def renew_permits(self, key: str, holders: Sequence[str], *, ttl: float) -> None:
        """Renew the permits of ``key`` held by ``holders`` for ``ttl`` seconds.

        Raises:
            BrokerConnectionError: PostgreSQL could not be reached.
        """
        if holders:
            await self.execute(
                self.sql.fill(_RENEW),
                {"key": key, "holders": list(holders), "ttl": float(ttl)},
                doing=f"renewing permits of {key!r}",
            )

    async def release_permit(self, key: str, holder: str) -> None:
        """Free the permit of ``key`` held by ``holder``.

        Raises:
            BrokerConnectionError: PostgreSQL could not be reached.
        """
        await self.execute(
            self.sql.fill(_RELEASE),
            {"key": key, "holder": holder},
            doing=f"releasing a permit of {key!r}",
        )
