"""The ``sqlite://`` broker's operations beyond moving messages: inspection, delayed listing
and unique enqueue, and the helpers every operation runs through.

:class:`BrokerOperations` is the base of :class:`~chicory_sqlite.broker.SqliteBroker`; it
holds no state of its own (the broker's constructor sets what it reads). The statements are
in :mod:`chicory_sqlite.admin` and :mod:`chicory_sqlite.unique`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from chicory.broker import Capabilities, DeadLetter, OutgoingMessage
from chicory.clock import to_epoch
from chicory.delayed import DelayedPage
from chicory.errors import BrokerError, MessageTooLargeError
from chicory.inspection import DeadLetterPage, QueueStats
from chicory.unique import UniqueClaim, check_claim
from chicory_sqlite import admin, unique
from chicory_sqlite.database import Database
from chicory_sqlite.statements import QueueStatements, trim_dead_letters

__all__ = ["BrokerOperations"]

T = TypeVar("T")


class BrokerOperations:
    """Inspection, delayed listing and unique enqueue on the broker's database."""

    database: Database
    statements: QueueStatements
    _capabilities: Capabilities
    _connected: bool
    _max_body_bytes: int | None
    _pruned_claims_at: float = -math.inf

    def _check_connected(self) -> None:
        if not self._connected:
            raise BrokerError("the sqlite broker is not connected; use 'async with broker:'")

    async def _read(self, call: Callable[[sqlite3.Connection], T]) -> T:
        self._check_connected()
        return await self.database.run(call)

    async def _write(self, call: Callable[[sqlite3.Connection], T]) -> T:
        self._check_connected()
        return await self.database.write(call)

    async def _with_dead(self, queues: Sequence[str], call: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read of dead letters, dropping those past ``dead_letter_max_age`` first."""
        max_age = self._capabilities.dead_letter_max_age
        if max_age is None:
            return await self._read(call)

        def trimmed(conn: sqlite3.Connection) -> T:
            now = time.time()
            for queue in queues:
                trim_dead_letters(conn, queue, now, None, max_age)
            return call(conn)

        return await self._write(trimmed)

    def _check_size(self, body: bytes) -> None:
        if self._max_body_bytes is not None and len(body) > self._max_body_bytes:
            raise MessageTooLargeError(
                f"body of {len(body)} bytes is over the {self._max_body_bytes}-byte limit of "
                "this broker (its max_body_bytes option)"
            )

    # -- unique enqueue --------------------------------------------------------------------

    async def publish_unique(
        self,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """Publish ``message`` unless ``key`` is held in ``queue``, in one transaction (see
        :meth:`chicory.unique.UniqueEnqueue.publish_unique`).

        Raises:
            ValueError: ``hold``/``keep`` out of range, or ``not_before`` is naive.
            MessageTooLargeError: the body is over ``max_body_bytes``.
            BrokerConnectionError: the database was locked past ``busy_timeout``.
        """
        check_claim(hold, keep)
        self._check_size(message.body)
        due = to_epoch(message.not_before) if message.not_before is not None else None
        item = (message.body, json.dumps(dict(message.headers)), due)
        statements = self.statements
        prune = time.monotonic() - self._pruned_claims_at >= unique.PRUNE_EVERY
        if prune:
            self._pruned_claims_at = time.monotonic()
        return await self._write(
            lambda conn: unique.claim_and_publish(
                conn,
                statements,
                queue,
                item,
                key=key,
                who=holder,
                hold=hold,
                keep=keep,
                prune=prune,
            )
        )

    async def release_unique(self, queue: str, key: str, holder: str) -> bool:
        """End ``holder``'s claim on ``key`` in ``queue``; False if it held none."""
        return await self._write(lambda conn: unique.release(conn, queue, key, holder))

    async def unique_holder(self, queue: str, key: str) -> str | None:
        """Who holds ``key`` in ``queue`` now, or ``None``."""
        return await self._read(lambda conn: unique.holder(conn, queue, key))

    # -- inspection ------------------------------------------------------------------------

    async def queues(self) -> list[str]:
        """Every queue published to, consumed or holding dead letters, sorted."""
        return await self._read(admin.queue_names)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """The stats of each of ``queues``, in order, from one snapshot."""
        names = list(queues)
        return await self._with_dead(names, lambda conn: admin.queue_stats(conn, names))

    async def dead_letter_page(
        self,
        queue: str,
        *,
        after: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> DeadLetterPage:
        """One page of ``queue``'s dead letters (see ``InspectableBroker.dead_letter_page``).

        Raises:
            ValueError: ``limit`` is below 1, a time is naive, or ``after`` is not an id.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        for moment in (since, until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{moment!r} is naive; pass an aware (UTC) datetime")
        return await self._with_dead(
            [queue],
            lambda conn: admin.dead_letter_page(
                conn,
                queue,
                after=after,
                limit=limit,
                since=since,
                until=until,
                newest_first=newest_first,
            ),
        )

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter of ``queue``, or ``None``."""
        return await self._with_dead(
            [queue], lambda conn: admin.get_dead_letter(conn, queue, dead_letter_id)
        )

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Swap a dead letter for a new ready message with ``body`` and ``headers``, in one
        transaction; False, doing nothing, if there is no such dead letter.

        Raises:
            MessageTooLargeError: ``body`` is over ``max_body_bytes``.
        """
        self._check_size(body)
        replacement = (body, json.dumps(dict(headers)))
        return await self._write(
            lambda conn: admin.replay(conn, queue, dead_letter_id, replacement)
        )

    # -- delayed listing -------------------------------------------------------------------

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """Up to ``limit`` delayed messages of ``queue``, soonest due first.

        Raises:
            ValueError: ``limit`` is below 1, or ``after`` is not a cursor of this broker.
        """
        return await self._read(
            lambda conn: admin.delayed_page(conn, queue, after=after, limit=limit)
        )

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove one delayed message so it is never delivered; False if it is not delayed."""
        return await self._write(lambda conn: admin.remove_delayed(conn, queue, message_id))
