"""Dead letters across queues: reading them as tasks, filtering, and paging with a cursor.

**Paging.** One page across several queues is merged by time: each queue is read from its own
position (the broker pages it with ``dead_letter_page``), the candidates are merged by
``dead_at`` and the first ``limit`` taken. The cursor records, per queue, the last letter the
listing has passed (returned, or read and not matching), so every letter appears on exactly
one page even while new ones arrive. It is opaque text (URL-safe base64 of JSON) and is only
meaningful with the same filter and order.

**Filters.** The queue and the time range are the broker's own selection; the task name, task
id and reason text are matched here, after reading, since brokers never read bodies. A page
with such a filter reads at most ``scan_limit`` letters per queue to fill itself, so a filter
matching little returns a short (even empty) page with a cursor instead of reading 100,000
letters at once; following the cursor continues the scan. Within such a scan the merge by
time holds per page, not necessarily across pages.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from collections.abc import Sequence
from typing import Any

import anyio
import orjson

from chicory.admin.models import DeadLetterFilter, DeadLetterInfo, DeadLetterListing
from chicory.broker import DeadLetter
from chicory.codec import Codec
from chicory.errors import ConfigurationError, MessageDecodeError
from chicory.history import read_history, split_reason
from chicory.inspection import Inspection

__all__ = ["decode_cursor", "describe", "encode_cursor", "list_page", "matches"]


def describe(letter: DeadLetter, codec: Codec) -> DeadLetterInfo:
    """Read a dead letter's body as a task message, as far as it can be read."""
    reason, traceback = split_reason(letter.reason)
    task = task_id = decode_error = None
    attempt: int | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    try:
        message = codec.decode(letter.body, letter.headers)
    except MessageDecodeError as exc:
        decode_error = str(exc)
        peek = _peek(letter.body)
        task = peek.get("task") if isinstance(peek.get("task"), str) else None
        task_id = peek.get("id") if isinstance(peek.get("id"), str) else None
    else:
        task, task_id, attempt = message.task, message.id, message.attempt
        args, kwargs = list(message.args), dict(message.kwargs)
    return DeadLetterInfo(
        id=letter.id,
        queue=letter.queue,
        dead_at=letter.dead_at,
        reason=reason,
        traceback=traceback,
        delivery_count=letter.delivery_count,
        task=task,
        task_id=task_id,
        attempt=attempt,
        args=args,
        kwargs=kwargs,
        decode_error=decode_error,
        history=read_history(letter.headers),
        headers=dict(letter.headers),
        body_size=len(letter.body),
    )


def _peek(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, unchecked (to name the task of an unsigned letter)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return raw if isinstance(raw, dict) else {}


def matches(info: DeadLetterInfo, selection: DeadLetterFilter) -> bool:
    """Whether ``info`` passes the filters Chicory applies (task, task id, reason text)."""
    if selection.task_id is not None and info.task_id != selection.task_id:
        return False
    if selection.task is not None and not fnmatch.fnmatchcase(info.task or "", selection.task):
        return False
    if selection.reason is not None:
        needle = selection.reason.casefold()
        text = f"{info.reason}\n{info.traceback or ''}".casefold()
        if needle not in text:
            return False
    return True


def encode_cursor(positions: dict[str, str], done: Sequence[str]) -> str:
    """The opaque cursor for per-queue positions and the queues already exhausted."""
    raw = orjson.dumps({"p": positions, "d": sorted(done)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dict[str, str], set[str]]:
    """Per-queue positions and exhausted queues of a cursor.

    Raises:
        ConfigurationError: the text is not a cursor this listing gave out.
    """
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        positions, done = raw["p"], raw["d"]
        if not (
            isinstance(positions, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in positions.items())
            and isinstance(done, list)
            and all(isinstance(q, str) for q in done)
        ):
            raise TypeError("wrong shape")
    except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise ConfigurationError(
            f"{cursor!r} is not a dead-letter cursor; pass the cursor a listing printed, unchanged"
        ) from exc
    return dict(positions), set(done)


class _Source:
    """One queue's matching letters, read from its position on."""

    def __init__(self, queue: str, after: str | None) -> None:
        self.queue = queue
        self.after = after
        self.candidates: list[DeadLetterInfo] = []
        self.last_read: str | None = None
        self.exhausted = False
        self.scanned = 0

    async def fill(
        self,
        broker: Inspection,
        codec: Codec,
        selection: DeadLetterFilter,
        *,
        limit: int,
        scan_limit: int,
        newest_first: bool,
    ) -> None:
        batch = max(limit, 200) if selection.reads_bodies else limit
        after = self.after
        while len(self.candidates) < limit and self.scanned < scan_limit:
            page = await broker.dead_letter_page(
                self.queue,
                after=after,
                limit=min(batch, scan_limit - self.scanned),
                since=selection.since,
                until=selection.until,
                newest_first=newest_first,
            )
            for letter in page.letters:
                self.scanned += 1
                self.last_read = after = letter.id
                info = describe(letter, codec)
                if matches(info, selection):
                    self.candidates.append(info)
                    if len(self.candidates) == limit:
                        break
            if page.next_after is None and len(self.candidates) < limit:
                self.exhausted = True
                return
            if not page.letters:
                return


async def list_page(
    broker: Inspection,
    codec: Codec,
    queues: Sequence[str],
    selection: DeadLetterFilter,
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool,
    scan_limit: int,
) -> DeadLetterListing:
    """One page of matching dead letters of ``queues``, merged by time (module docstring)."""
    if limit < 1:
        raise ConfigurationError(f"limit must be at least 1, got {limit}")
    positions, done = decode_cursor(cursor) if cursor else ({}, set())
    sources = [_Source(q, positions.get(q)) for q in queues if q not in done]

    async def fill(source: _Source) -> None:
        await source.fill(
            broker,
            codec,
            selection,
            limit=limit,
            scan_limit=scan_limit,
            newest_first=newest_first,
        )

    async with anyio.create_task_group() as group:
        for source in sources:
            group.start_soon(fill, source)
    merged = sorted(
        (info for source in sources for info in source.candidates),
        key=lambda info: (info.dead_at, info.queue, info.id),
        reverse=newest_first,
    )
    page = merged[:limit]
    taken: dict[str, list[DeadLetterInfo]] = {}
    for info in page:
        taken.setdefault(info.queue, []).append(info)
    for source in sources:
        mine = taken.get(source.queue, [])
        if len(mine) == len(source.candidates):  # all it matched was taken
            if source.last_read is not None:
                positions[source.queue] = source.last_read
            if source.exhausted:
                done.add(source.queue)
        elif mine:
            positions[source.queue] = mine[-1].id
    left = [q for q in queues if q not in done]
    return DeadLetterListing(
        letters=page,
        cursor=encode_cursor(positions, sorted(done)) if left else None,
        scanned=sum(source.scanned for source in sources),
    )
