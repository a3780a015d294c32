"""The memory broker's side of the ``inspection`` capability: reads of the store for tools.

Synchronous functions over a :class:`~chicory_memory.store.MemoryStore`, like the store's own
methods, so each is atomic. Dead letters live in each queue's ``dead`` dict in the order they
were recorded (their ids number them, ``<prefix>-dead-<n>``), so a page is a walk from the
start (or the end) of that dict: cheap for the first pages, linear in how far a cursor is.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from chicory.broker import DeadLetter
from chicory.clock import to_epoch
from chicory.delayed import DelayedMessage, DelayedPage
from chicory.inspection import DeadLetterPage, QueueStats
from chicory_memory.model import BODY, HEADERS, MESSAGE_ID, SINCE, QueueState
from chicory_memory.store import MemoryStore

__all__ = ["dead_letter_page", "delayed_page", "queue_stats", "remove_delayed"]


def queue_stats(store: MemoryStore, names: Sequence[str], now: float) -> list[QueueStats]:
    """The stats of each queue of ``names`` as of ``now``."""
    out: list[QueueStats] = []
    for name in names:
        counts = store.counts(name, now)
        queue = store.queues.get(name)
        consumers = 0
        oldest = None
        if queue is not None:
            consumers = sum(1 for s in store.subscriptions if not s.closed and queue in s.queues)
            waiting = [entry[2][SINCE] for entry in queue.ranked]
            if queue.ready:
                waiting.append(queue.ready[0][SINCE])
            if waiting:
                oldest = datetime.fromtimestamp(min(waiting), UTC)
        out.append(
            QueueStats(
                queue=name,
                ready=counts.ready,
                in_flight=counts.in_flight,
                delayed=counts.delayed,
                dead=counts.dead,
                consumers=consumers,
                oldest_ready_at=oldest,
            )
        )
    return out


def _number(dead_letter_id: str) -> int:
    """The sequence number of a dead letter id (``-1`` if it is not one of ours)."""
    tail = dead_letter_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def dead_letter_page(
    queue: QueueState | None,
    *,
    after: str | None,
    limit: int,
    since: datetime | None,
    until: datetime | None,
    newest_first: bool,
) -> DeadLetterPage:
    """One page of ``queue``'s dead letters (see ``InspectableBroker.dead_letter_page``).

    Raises:
        ValueError: ``limit`` is below 1, or a time is naive.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    low = to_epoch(since) if since is not None else None
    high = to_epoch(until) if until is not None else None
    if queue is None:
        return DeadLetterPage(letters=[], next_after=None)
    letters: Iterable[DeadLetter] = (
        reversed(queue.dead.values()) if newest_first else queue.dead.values()
    )
    if after is not None:
        mark = _number(after)
        if newest_first:
            letters = itertools.dropwhile(lambda d: _number(d.id) >= mark, letters)
        else:
            letters = itertools.dropwhile(lambda d: _number(d.id) <= mark, letters)
    page: list[DeadLetter] = []
    more = False
    for letter in letters:
        at = letter.dead_at.timestamp()
        if low is not None and at < low:
            if newest_first:
                break  # older still from here on
            continue
        if high is not None and at >= high:
            if newest_first:
                continue
            break
        if len(page) == limit:
            more = True
            break
        page.append(letter)
    return DeadLetterPage(letters=page, next_after=page[-1].id if more else None)


def delayed_page(
    queue: QueueState | None, now: float, *, after: str | None, limit: int
) -> DelayedPage:
    """One page of ``queue``'s delayed messages, soonest due first, then by id (a cursor is
    ``"<due>/<id>"``).

    Raises:
        ValueError: ``limit`` is below 1, or ``after`` is not such a cursor.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    mark: tuple[float, str] | None = None
    if after is not None:
        due_text, sep, mark_id = after.partition("/")
        try:
            mark = (float(due_text), mark_id)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"{after!r} is not a delayed-page cursor of the memory broker")
    if queue is None:
        return DelayedPage(messages=[], next_after=None)
    entries = sorted(
        (due, message[MESSAGE_ID], message) for due, _, message in queue.delayed if due > now
    )
    if mark is not None:
        entries = [entry for entry in entries if (entry[0], entry[1]) > mark]
    page = entries[:limit]
    messages = [
        DelayedMessage(
            id=message_id,
            queue=queue.name,
            body=message[BODY],
            headers=dict(message[HEADERS]),
            due_at=datetime.fromtimestamp(due, UTC),
        )
        for due, message_id, message in page
    ]
    more = len(entries) > limit
    return DelayedPage(
        messages=messages, next_after=f"{page[-1][0]!r}/{page[-1][1]}" if more else None
    )


def remove_delayed(queue: QueueState, message_id: str) -> bool:
    """Remove the delayed message ``message_id`` of ``queue``; False if it is not there."""
    kept = [entry for entry in queue.delayed if entry[2][MESSAGE_ID] != message_id]
    if len(kept) == len(queue.delayed):
        return False
    heapq.heapify(kept)
    queue.delayed[:] = kept
    return True
