"""The Sentry middleware: each task that fails becomes one Sentry event, with its context.

Each run happens in an isolation scope of its own, tagged with the task's name and queue
(``chicory.task``, ``chicory.queue``) and carrying a ``chicory`` context: task name, id,
attempt, queue, delivery count, worker id, and the arguments as sent, as JSON cut to
``max_args_length`` characters. Breadcrumbs and tags a task adds stay with its own events.

What is reported: an exception that ends a task for good (retries exhausted, not
retryable, ``ctx.fail()``), marked unhandled with mechanism ``chicory``. An attempt that
will be retried is not an error yet, so it is reported only with ``report_retries=True``;
``ctx.retry()`` (a request, not a failure) never is. ``sentry_sdk.init(ignore_errors=[...])``
drops exception types as usual.

The worker also logs each failure on the ``chicory.task`` logger; Sentry's logging
integration would turn that line into a second event, so this middleware tells it to ignore
that logger.
"""

from __future__ import annotations

from typing import Any

import orjson
import sentry_sdk
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.utils import event_from_exception

from chicory.context import Retry, TaskContext
from chicory.middleware import CallNext, Middleware

__all__ = ["SentryMiddleware"]


class SentryMiddleware(Middleware):
    """Reports tasks that fail to Sentry, with the task's context.

    Args:
        report_retries: Also report attempts that will be retried.
        max_args_length: Characters of the arguments' JSON kept in the event.
    """

    def __init__(self, *, report_retries: bool = False, max_args_length: int = 1024) -> None:
        self.report_retries = report_retries
        self.max_args_length = max_args_length
        ignore_logger("chicory.task")

    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        """Run the task in its own scope; report its exception if it fails."""
        with sentry_sdk.isolation_scope() as scope:
            scope.set_tag("chicory.task", ctx.task_name)
            scope.set_tag("chicory.queue", ctx.queue)
            scope.set_context(
                "chicory",
                {
                    "task_name": ctx.task_name,
                    "task_id": ctx.task_id,
                    "attempt": ctx.attempt,
                    "queue": ctx.queue,
                    "delivery_count": ctx.delivery_count,
                    "worker_id": ctx.worker_id,
                    "args": self._capped(ctx.args),
                    "kwargs": self._capped(ctx.kwargs),
                },
            )
            try:
                return await call_next(ctx)
            except Exception as exc:
                if not isinstance(exc, Retry) and (self.report_retries or not ctx.will_retry(exc)):
                    self._report(exc)
                raise

    def _capped(self, value: Any) -> str:
        text = orjson.dumps(value, default=repr).decode()
        if len(text) <= self.max_args_length:
            return text
        return text[: self.max_args_length] + f"... ({len(text)} characters)"

    @staticmethod
    def _report(exc: Exception) -> None:
        client = sentry_sdk.get_client()
        if not client.is_active():
            return
        event, hint = event_from_exception(
            exc,
            client_options=client.options,
            mechanism={"type": "chicory", "handled": False},
        )
        sentry_sdk.capture_event(event, hint=hint)
