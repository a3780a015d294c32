"""The memory broker's side of the ``unique_enqueue`` capability (:mod:`chicory.unique`).

Each queue keeps its keys' claims in ``QueueState.claims`` (key -> holder, the time the
claim lasts at least, the time it ends). Every operation is one synchronous call, so the
check, the claim and the publish are atomic; an expired claim is dropped when its key is
next looked at.
"""

from __future__ import annotations

from chicory_memory.model import Claim, QueueState

__all__ = ["claim", "holder", "release"]


def holder(queue: QueueState | None, key: str, now: float) -> str | None:
    """Who holds ``key`` in ``queue`` at ``now`` (``None``: free; an expired claim is
    dropped)."""
    if queue is None:
        return None
    found = queue.claims.get(key)
    if found is None:
        return None
    if found.expires_at <= now:
        del queue.claims[key]
        return None
    return found.holder


def claim(queue: QueueState, key: str, who: str, hold: float, keep: float, now: float) -> None:
    """Claim the free ``key`` for ``who``: at least ``keep`` s, at most ``hold`` s."""
    queue.claims[key] = Claim(holder=who, keep_until=now + keep, expires_at=now + hold)


def release(queue: QueueState | None, key: str, who: str, now: float) -> bool:
    """End ``who``'s claim on ``key`` now, or at its ``keep_until``; False if not its."""
    if holder(queue, key, now) != who:
        return False
    assert queue is not None
    found = queue.claims[key]
    if found.keep_until > now:
        queue.claims[key] = found._replace(expires_at=found.keep_until)
    else:
        del queue.claims[key]
    return True
