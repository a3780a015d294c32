"""The worker's per-task log lines: one per meaningful event, on the ``chicory.task`` logger.

Every line names its event and carries the task's name, id, attempt, queue and the worker's
id, in its text and as fields of the log record (``extra``), which ``chicory worker
--log-format json`` writes as keys of one JSON object per line:

=================  =======  ==============================================================
event              level    when, and what more it carries
=================  =======  ==============================================================
``received``       DEBUG    a message was decoded
``started``        DEBUG    a ``track_started`` task is about to run
``succeeded``      DEBUG    a task returned (``duration``, seconds)
``redelivered``    INFO     a message arrives again (``delivery_count``): a worker died or
                            handed it back, or a lease expired
``retrying``       WARNING  a task raised and runs again (``delay``, ``error``; the traceback
                            too when DEBUG is on)
``failed``         ERROR    a task failed for good and was dead-lettered (``reason``,
                            ``error``, traceback)
``dead_lettered``  ERROR    a message that could not run was dead-lettered (``reason``,
                            ``message_id``): undecodable, unknown task, bad arguments
``lease_lost``     WARNING  an ack came too late: another worker may run the task
``not_run``        WARNING  an at-most-once task's pre-run ack failed, so it did not run
``cancelled``      WARNING  a drain ran out of time while the task ran
=================  =======  ==============================================================

Successes are DEBUG so that a production worker at INFO writes a line only when something
needs a look: a line per task would cost a worker draining tens of thousands of tasks a
second most of its time. Turn them on for one logger with
``logging.getLogger("chicory.task").setLevel(logging.DEBUG)`` (or ``--log-level DEBUG``).
Whether DEBUG is enabled is read once, when the worker is created.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from chicory.envelope import TaskMessage

__all__ = ["TaskLog", "log"]

log: Final = logging.getLogger("chicory.task")


class TaskLog:
    """Writes one worker's per-task lines.

    Args:
        worker_id: The worker's id, on every line.

    Attributes:
        debug: Whether DEBUG lines are written (read once, here): the worker checks it
            before calling :meth:`received`, :meth:`started` or :meth:`succeeded`.
    """

    __slots__ = ("_worker_id", "debug")

    def __init__(self, worker_id: str) -> None:
        self._worker_id = worker_id
        self.debug = log.isEnabledFor(logging.DEBUG)

    def received(self, message: TaskMessage, queue: str) -> None:
        """A message was decoded (DEBUG)."""
        self._line(logging.DEBUG, "received", message, queue)

    def started(self, message: TaskMessage, queue: str) -> None:
        """A ``track_started`` task is about to run (DEBUG)."""
        self._line(logging.DEBUG, "started", message, queue)

    def succeeded(self, message: TaskMessage, queue: str, duration: float) -> None:
        """A task returned (DEBUG)."""
        self._line(
            logging.DEBUG,
            "succeeded",
            message,
            queue,
            f"in {duration:.3f} s",
            duration=round(duration, 6),
        )

    def redelivered(self, message: TaskMessage, queue: str, delivery_count: int) -> None:
        """A message arrived again (INFO)."""
        self._line(
            logging.INFO,
            "redelivered",
            message,
            queue,
            f"(delivery {delivery_count})",
            delivery_count=delivery_count,
        )

    def retrying(self, message: TaskMessage, queue: str, exc: BaseException, delay: float) -> None:
        """A task raised and runs again after ``delay`` seconds (WARNING; with the traceback
        when DEBUG is on: the failure that ends a task always has it)."""
        error = _describe(exc)
        self._line(
            logging.WARNING,
            "retrying",
            message,
            queue,
            f"in {delay:.2f} s after {error}",
            exc=exc if self.debug else None,
            delay=round(delay, 6),
            error=error,
        )

    def failed(self, message: TaskMessage, queue: str, exc: BaseException, reason: str) -> None:
        """A task failed for good and is dead-lettered (ERROR, with traceback)."""
        self._line(
            logging.ERROR,
            "failed",
            message,
            queue,
            f"and is dead-lettered: {reason}",
            exc=exc,
            reason=reason,
            error=_describe(exc),
        )

    def dead_lettered(
        self, message: TaskMessage | None, queue: str, message_id: str, reason: str
    ) -> None:
        """A message that could not run is dead-lettered (ERROR)."""
        self._line(
            logging.ERROR,
            "dead_lettered",
            message,
            queue,
            f"(message {message_id}): {reason}",
            reason=reason,
            message_id=message_id,
        )

    def lease_lost(self, message: TaskMessage | None, queue: str, what: str) -> None:
        """An ack was refused because the lease had expired (WARNING)."""
        self._line(
            logging.WARNING,
            "lease_lost",
            message,
            queue,
            f"before its {what}: it was not settled within the broker's lease time, so "
            "another worker may run it (renew leases more often than the lease time)",
            reason=what,
        )

    def not_run(self, message: TaskMessage, queue: str) -> None:
        """An at-most-once task's pre-run ack failed (WARNING)."""
        self._line(logging.WARNING, "not_run", message, queue, "because its pre-run ack failed")

    def cancelled(self, message: TaskMessage, queue: str, handed_back: bool) -> None:
        """A drain ran out of time while the task ran (WARNING)."""
        what = "handing it back" if handed_back else "it is lost (at most once)"
        self._line(logging.WARNING, "cancelled", message, queue, f"by shutdown; {what}")

    def _line(
        self,
        level: int,
        event: str,
        message: TaskMessage | None,
        queue: str,
        detail: str = "",
        *,
        exc: BaseException | None = None,
        **more: Any,
    ) -> None:
        if not log.isEnabledFor(level):
            return
        name, task_id, attempt = (
            (message.task, message.id, message.attempt) if message is not None else ("", "", 0)
        )
        fields = {
            "event": event,
            "task_name": name,
            "task_id": task_id,
            "attempt": attempt,
            "queue": queue,
            "worker_id": self._worker_id,
            **more,
        }
        text = (
            f"task {event.replace('_', ' ')}: {name or '?'}[{task_id or '?'}] attempt={attempt} "
            f"queue={queue} worker={self._worker_id}"
        )
        log.log(level, f"{text} {detail}" if detail else text, exc_info=exc, extra=fields)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
