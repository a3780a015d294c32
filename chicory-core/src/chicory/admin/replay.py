"""How a replay restarts a task's retry budget (see :mod:`chicory.admin.api`).

The dead letter's body is decoded, re-encoded as attempt 1 of the same task id (and signed
with the app's key), its headers carried over with two history entries appended (when and
why it was dead-lettered, and who replayed it); the task's old final record is forgotten
where the result backend can; then the broker swaps the dead letter for the new message in
one atomic step (``requeue_dead_letter``).
"""

from __future__ import annotations

import attrs

from chicory.admin.letters import describe
from chicory.admin.models import DeadLetterRef
from chicory.app import Chicory
from chicory.broker import DeadLetter
from chicory.clock import utcnow
from chicory.errors import MessageDecodeError
from chicory.history import HistoryEntry, with_history
from chicory.inspection import Inspection, RecordForgetting

__all__ = ["fresh_message", "replay_fresh"]


def fresh_message(
    app: Chicory, letter: DeadLetter, actor: str
) -> tuple[bytes, dict[str, str], str | None]:
    """The message that replays ``letter``: attempt 1, history appended, signed anew.

    Returns:
        ``(body, headers, task_id)``; ``task_id`` is ``None`` (and the body unchanged) when
        the body is not a readable envelope.

    Raises:
        MessageTooLargeError: the re-encoded body is over the app's ``max_message_bytes``.
    """
    codec = app.codec
    reason = describe(letter, codec).reason
    try:
        message = codec.decode(letter.body, letter.headers)
    except MessageDecodeError:
        body, headers, attempt, task_id = letter.body, dict(letter.headers), 0, None
    else:
        # Every header is carried over; the codec signs the new body with them.
        body, headers = codec.encode(attrs.evolve(message, attempt=1, eta=None), letter.headers)
        attempt, task_id = message.attempt, message.id
    headers = with_history(
        headers,
        HistoryEntry(at=letter.dead_at, event="dead", attempt=attempt, detail=reason),
        HistoryEntry(at=utcnow(), event="replay", attempt=attempt, detail=f"by {actor}"),
    )
    return body, headers, task_id


async def replay_fresh(
    app: Chicory, inspection: Inspection, ref: DeadLetterRef, actor: str
) -> tuple[bool, str | None]:
    """Replay one dead letter with a fresh retry budget.

    Returns:
        ``(replayed, task_id)``: ``replayed`` is False when the letter was gone;
        ``task_id`` is ``None`` for a letter whose body is not a readable envelope.
    """
    letter = await inspection.get_dead_letter(ref.queue, ref.id)
    if letter is None:
        return False, None
    body, headers, task_id = fresh_message(app, letter, actor)
    if task_id is not None:
        backend = await app.connected_backend()
        if isinstance(backend, RecordForgetting):
            await backend.forget(task_id)  # so a wait for the result waits for this run
    done = await inspection.requeue_dead_letter(ref.queue, ref.id, body, headers)
    return done, task_id
