"""The dead-letter part of the admin API: list, read, find, replay, delete and purge.

See :mod:`chicory.admin.api` for how a replay restarts the retry budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from chicory.admin.base import AdminBase
from chicory.admin.fallback import CoreOnlyInspector
from chicory.admin.letters import describe, list_page
from chicory.admin.models import (
    ActionReport,
    DeadLetterFilter,
    DeadLetterInfo,
    DeadLetterListing,
    DeadLetterRef,
)
from chicory.admin.replay import replay_fresh
from chicory.broker import DeadLetter
from chicory.errors import BrokerConnectionError, ChicoryError
from chicory.inspection import missing_inspection

__all__ = ["DeadLetterAdmin", "Progress"]

Progress = Callable[[int, int], None]
"""Called with ``(done, total)`` as a bulk action goes."""


class DeadLetterAdmin(AdminBase):
    """Dead letters across queues (part of :class:`~chicory.admin.Admin`)."""

    async def _selected_queues(self, selection: DeadLetterFilter) -> list[str]:
        return list(selection.queues) if selection.queues else await self.queue_names()

    async def dead_letters(
        self,
        selection: DeadLetterFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = False,
    ) -> DeadLetterListing:
        """One page of dead letters across queues (all by default), merged by time.

        Args:
            selection: Which letters (default: all).
            cursor: The ``cursor`` of the previous page, to get the next one.
            limit: Most letters on the page.
            newest_first: Newest first instead of oldest first.

        Raises:
            ConfigurationError: ``cursor`` is not one a listing gave out, or ``limit`` < 1.
        """
        selection = selection or DeadLetterFilter()
        return await list_page(
            await self._inspection(),
            self.app.codec,
            await self._selected_queues(selection),
            selection,
            cursor=cursor,
            limit=limit,
            newest_first=newest_first,
            scan_limit=self.scan_limit,
        )

    async def iter_dead_letters(
        self, selection: DeadLetterFilter | None = None, *, newest_first: bool = False
    ) -> AsyncIterator[DeadLetterInfo]:
        """Every matching dead letter, page after page."""
        cursor: str | None = None
        while True:
            page = await self.dead_letters(
                selection, cursor=cursor, limit=500, newest_first=newest_first
            )
            for info in page.letters:
                yield info
            if page.cursor is None:
                return
            cursor = page.cursor

    async def select(self, selection: DeadLetterFilter | None = None) -> list[DeadLetterRef]:
        """Where every matching dead letter is, oldest first (what a bulk action acts on)."""
        return [info.ref async for info in self.iter_dead_letters(selection)]

    async def _find(self, dead_letter_id: str, queue: str | None) -> DeadLetter | None:
        inspection = await self._inspection()
        for name in [queue] if queue else await self.queue_names():
            letter = await inspection.get_dead_letter(name, dead_letter_id)
            if letter is not None:
                return letter
        return None

    async def dead_letter(self, dead_letter_id: str, queue: str | None = None) -> DeadLetterInfo:
        """One dead letter, read as a task.

        Args:
            dead_letter_id: Its id.
            queue: Its queue (default: looked for in every queue).

        Raises:
            LookupError: there is no such dead letter.
        """
        letter = await self._find(dead_letter_id, queue)
        if letter is None:
            where = f"queue {queue!r}" if queue else "any queue"
            raise LookupError(f"no dead letter {dead_letter_id!r} in {where}")
        return describe(letter, self.app.codec)

    async def locate(self, ids: Sequence[str], queue: str | None = None) -> list[DeadLetterRef]:
        """The queue of each dead letter id (``queue`` if given, else found by looking).

        Raises:
            LookupError: an id names no dead letter.
        """
        refs = []
        for dead_letter_id in ids:
            if queue is not None:
                refs.append(DeadLetterRef(queue=queue, id=dead_letter_id))
                continue
            letter = await self._find(dead_letter_id, None)
            if letter is None:
                raise LookupError(f"no dead letter {dead_letter_id!r} in any queue")
            refs.append(DeadLetterRef(queue=letter.queue, id=letter.id))
        return refs

    async def replay(
        self,
        refs: Sequence[DeadLetterRef],
        *,
        verbatim: bool = False,
        on_progress: Progress | None = None,
    ) -> ActionReport:
        """Put dead letters back on their queues (see the module docstring).

        Args:
            refs: The dead letters (from :meth:`select` or :meth:`locate`).
            verbatim: Put each back exactly as it was (attempt number included).
            on_progress: Called after each letter with ``(done, total)``.

        Raises:
            CapabilityError: a replay restarting the retry budget needs the broker's
                ``inspection`` capability (``verbatim=True`` does not).
            BrokerConnectionError: the broker could not be reached (letters replayed up to
                then stay replayed).
        """
        inspection = await self._inspection()
        broker = await self.app.connected_broker()
        if not verbatim and isinstance(inspection, CoreOnlyInspector):
            raise missing_inspection(
                broker, "a replay that restarts the retry budget (a verbatim replay does not)"
            )
        done = missing = 0
        failed: list[tuple[DeadLetterRef, str]] = []
        task_ids: list[str] = []
        for index, ref in enumerate(refs, 1):
            try:
                if verbatim:
                    ok = await broker.replay_dead_letter(ref.queue, ref.id)
                    task_id = None
                else:
                    ok, task_id = await replay_fresh(self.app, inspection, ref, self.actor)
            except BrokerConnectionError:
                raise
            except (ChicoryError, ValueError, TypeError) as exc:
                failed.append((ref, str(exc)))
            else:
                if ok:
                    done += 1
                    if task_id is not None:
                        task_ids.append(task_id)
                else:
                    missing += 1
            if on_progress is not None:
                on_progress(index, len(refs))
        return ActionReport(
            action="replay",
            matched=len(refs),
            done=done,
            missing=missing,
            failed=failed,
            dry_run=False,
            refs=list(refs),
            task_ids=task_ids,
        )

    async def delete(
        self, refs: Sequence[DeadLetterRef], *, on_progress: Progress | None = None
    ) -> ActionReport:
        """Delete dead letters for good.

        Raises:
            BrokerConnectionError: the broker could not be reached (letters deleted up to
                then stay deleted).
        """
        broker = await self.app.connected_broker()
        done = 0
        for index, ref in enumerate(refs, 1):
            done += bool(await broker.delete_dead_letter(ref.queue, ref.id))
            if on_progress is not None:
                on_progress(index, len(refs))
        return ActionReport(
            action="delete",
            matched=len(refs),
            done=done,
            missing=len(refs) - done,
            failed=[],
            dry_run=False,
            refs=list(refs),
        )

    async def purge(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Delete every dead letter of ``queues`` (default: every queue); return how many
        each queue had."""
        broker = await self.app.connected_broker()
        names = list(queues) if queues else await self.queue_names()
        return {name: await broker.purge_dead_letters(name) for name in names}
