"""The worker's job state machine, as data. Pure: no I/O, no broker, no clock.

Every delivery a worker takes becomes a job that moves through these states::

    RECEIVED ──> RUNNING ──> SUCCEEDED
       │            ├──────> RETRYING
       │            ├──────> FAILED      (retries exhausted, ctx.fail(), timeout at the limit)
       │            └──────> CANCELLED   (drain timeout: handed back or lost, by mode;
       │                                  or a cancel request: recorded CANCELLED, acked)
       ├──────────────────> SUCCEEDED   (delivered again with its result stored already:
       │                                  acked unrun, see chicory.worker.followups)
       ├──────────────────> DEAD        (undecodable, unknown task, bad arguments)
       ├──────────────────> DEFERRED    (over a rate or concurrency limit: handed back
       │                                 delayed, to wait in the broker, chicory.flow)
       └──────────────────> CANCELLED   (not started: handed back; pre-ack failed; or
                                         revoked: recorded CANCELLED, acked unrun)

The worker calls :func:`transition` for every move; the ack strategy of the job's delivery
mode (:mod:`chicory.worker.ack`) is invoked for the move's side effects. An illegal move
raises :class:`~chicory.errors.IllegalTransitionError`: a bug, never a silent skip.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from chicory.errors import IllegalTransitionError

__all__ = ["TERMINAL", "TRANSITIONS", "JobState", "transition"]


class JobState(enum.Enum):
    """Where one job is in the worker."""

    RECEIVED = "received"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    DEFERRED = "deferred"

    # Members are singletons: identity hashing is correct and much cheaper than Enum's
    # name-based hash, and transition() runs twice per task.
    __hash__ = object.__hash__


TRANSITIONS: Final[Mapping[JobState, frozenset[JobState]]] = {
    JobState.RECEIVED: frozenset(
        {
            JobState.RUNNING,
            JobState.SUCCEEDED,
            JobState.DEAD,
            JobState.CANCELLED,
            JobState.DEFERRED,
        }
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.RETRYING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.RETRYING: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.DEAD: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.DEFERRED: frozenset(),
}
"""For each state, the states it may move to. States with no exits are terminal."""

TERMINAL: Final = frozenset(state for state, exits in TRANSITIONS.items() if not exits)


def transition(current: JobState, target: JobState) -> JobState:
    """Return ``target`` if the table allows ``current -> target``.

    Raises:
        IllegalTransitionError: the move is not in :data:`TRANSITIONS`.
    """
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none (terminal)"
        raise IllegalTransitionError(
            f"job cannot move from {current.value} to {target.value}; allowed: {allowed}"
        )
    return target
