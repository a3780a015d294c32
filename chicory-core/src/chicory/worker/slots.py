"""What each runner is running right now, so a cancel request can find it by task id.

A worker has one :class:`RunnerSlot` per runner. While a task function runs, its slot holds
the task id, the run's :class:`~chicory.context.CancelToken` (when the task takes a context)
and, for a sync task, its thread call. :meth:`RunnerSlot.cancel` is what a cancel request
does to a running task:

- the run is marked cancelled (``ctx.cancelled`` turns true), so it ends ``CANCELLED``
  whatever the function does next;
- an async task is cancelled at its current ``await`` (``asyncio.CancelledError``);
- a sync task cannot be interrupted safely: it sees the flag, and its runner waits for the
  thread to end (as for a time limit, :mod:`chicory.timelimits`).

Filling a slot is three attribute writes per task; cancelling scans the worker's slots
(``concurrency`` of them), which only a cancel request does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from chicory.context import CancelToken
from chicory.worker.threads import ThreadCall

__all__ = ["RunnerSlot"]


class RunnerSlot:
    """One runner's current run.

    Args:
        task: The runner's asyncio task (what an async task function runs in).
    """

    __slots__ = ("call", "cancel_requested", "in_function", "task", "task_id", "token")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.task_id: str | None = None
        self.token: CancelToken | None = None
        self.call: ThreadCall | None = None
        self.in_function = False
        """True while an async task function runs in :attr:`task` (so it may be cancelled)."""
        self.cancel_requested = False

    def start(self, task_id: str, token: CancelToken | None) -> None:
        """A run of ``task_id`` begins in this slot."""
        self.task_id = task_id
        self.token = token
        self.cancel_requested = False

    def clear(self) -> None:
        """The run ended."""
        self.task_id = None
        self.token = None
        self.call = None
        self.in_function = False

    def cancel(self) -> None:
        """Ask the run in this slot to stop (see the module docstring)."""
        if self.task_id is None or self.cancel_requested:
            return
        self.cancel_requested = True
        if self.token is not None:
            self.token.cancelled = True
        if self.in_function and self.task is not None and self.call is None:
            self.task.cancel()
