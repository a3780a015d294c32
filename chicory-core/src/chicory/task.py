"""Tasks: a registered function plus its delivery options, and the ways to enqueue it."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from chicory.broker import OutgoingMessage, outgoing_message
from chicory.bulk import enqueue_many
from chicory.calls import (
    MAX_DELAY,
    check_task_id,
    due_time,
    new_task_id,
    new_task_ids,
    outcome_unknown,
)
from chicory.envelope import TaskMessage
from chicory.errors import ConfigurationError, PublishOutcomeUnknownError
from chicory.flow import RateLimit, task_flow
from chicory.middleware import OutgoingTask
from chicory.modes import DeliveryMode, ValidationMode
from chicory.priority import PRIORITY_HEADER, check_priority, require_priorities
from chicory.result import AsyncResult
from chicory.retry import RetryPolicy
from chicory.timelimits import check_limits, limit_headers
from chicory.unique import check_key, enqueue_unique
from chicory.validation import Signature

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.blocking import BlockingTask
    from chicory.workflow.canvas import Signature as StepSignature

__all__ = [
    "MAX_DELAY",
    "Task",
    "check_task_id",
    "new_task_id",
    "new_task_ids",
    "outcome_unknown",
]  # all but Task live in chicory.calls, and are here for the modules that import them here

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function registered with ``@app.task``. Enqueue it with ``delay`` or ``apply_async``.

    The wrapped function stays available as :attr:`fn` (call it directly in unit tests).

    Attributes:
        name: The registered name; what travels on the wire.
        delivery_mode: When the worker acks (see :class:`~chicory.modes.DeliveryMode`).
        retry_policy: How failures are retried.
        ignore_result: Store no result (``AsyncResult.get`` is refused).
        validation_mode: How arguments and results are checked.
        queue: The default queue.
        timeout: Seconds a run may take before it is stopped and counted as a failure
            (its hard time limit; see :mod:`chicory.timelimits`).
        soft_timeout: Seconds after which :class:`~chicory.errors.TaskSoftTimeoutError` is
            raised inside the run (below ``timeout``).
        track_started: Record a ``STARTED`` state when a run begins.
        result_ttl: Seconds its results are kept (the app's ``result_ttl`` unless set).
        max_result_bytes: Largest result record stored (the app's unless set; ``None``:
            no limit).
        flow: Its rate and concurrency limits (``None`` without any; see
            :mod:`chicory.flow`).
        priority: Its messages' default priority (``None``: none, read as 0; see
            :mod:`chicory.priority`).
    """

    def __init__(
        self,
        app: Chicory,
        fn: Callable[..., Any],
        *,
        name: str,
        delivery_mode: DeliveryMode,
        retry_policy: RetryPolicy,
        ignore_result: bool,
        validation_mode: ValidationMode,
        queue: str,
        timeout: float | None,
        track_started: bool = False,
        soft_timeout: float | None = None,
        result_ttl: float | None = None,
        max_result_bytes: int | None = None,
        rate_limit: str | RateLimit | None = None,
        concurrency_limit: int | None = None,
        priority: int | None = None,
    ) -> None:
        check_limits(f"task {name!r}", timeout, soft_timeout)
        check_priority(f"task {name!r}", priority)
        if priority is not None:
            require_priorities(app.broker, f"task {name!r}")
        self.flow = task_flow(app.broker, name, rate_limit, concurrency_limit)
        self.priority = priority
        if result_ttl is not None and not result_ttl > 0:
            raise ConfigurationError(
                f"task {name!r}: result_ttl must be positive, got {result_ttl}"
            )
        if max_result_bytes is not None and max_result_bytes < 1:
            raise ConfigurationError(
                f"task {name!r}: max_result_bytes must be at least 1, got {max_result_bytes}"
            )
        self.app = app
        self.fn = fn
        self.name = name
        self.delivery_mode = DeliveryMode(delivery_mode)
        self.retry_policy = retry_policy
        self.ignore_result = ignore_result
        self.validation_mode = ValidationMode(validation_mode)
        self.queue = queue
        self.timeout = timeout
        self.soft_timeout = soft_timeout
        self.track_started = track_started and not ignore_result
        self.result_ttl = app.result_ttl if result_ttl is None else result_ttl
        self.max_result_bytes = (
            app.max_result_bytes if max_result_bytes is None else max_result_bytes
        )
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(name, fn, app.value_converter)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.delivery_mode.value} queue={self.queue!r}>"

    @property
    def blocking(self) -> BlockingTask[P, R]:
        """This task's blocking face, for synchronous code: ``task.blocking.delay(...)``
        blocks until the message is enqueued (see :mod:`chicory.blocking`)."""
        from chicory.blocking import BlockingTask

        return BlockingTask(self)

    def s(self, *args: Any, **kwargs: Any) -> StepSignature:
        """A workflow step calling this task (see :mod:`chicory.workflow`): in a chain it
        gets the previous step's result as its first argument, before ``args``."""
        from chicory.workflow.canvas import Signature as StepSignature

        return StepSignature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> StepSignature:
        """An immutable workflow step: it ignores the previous step's result."""
        from chicory.workflow.canvas import Signature as StepSignature

        return StepSignature(self, args, kwargs, immutable=True)

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Enqueue one run with these arguments and return its result handle.

        The same as ``apply_async(args, kwargs)``: the same checks and the same message,
        by a shorter path when no publish middleware and no priority are involved.

        Raises:
            ArgumentValidationError: the arguments do not fit the signature or its types.
            MessageTooLargeError: the encoded message is over the app's size limit.
            BrokerConnectionError: the broker could not be reached (nothing was enqueued).
            PublishOutcomeUnknownError: the task may or may not be enqueued.
        """
        app = self.app
        if app.publish_hooks or self.priority is not None:
            return await self.apply_async(args, kwargs)
        now = app.utcnow()
        wire_args, wire_kwargs = self.signature.bind(args, kwargs, self.validation_mode)
        task_id = new_task_id()
        queue = self.queue
        outgoing = self._plain_message(task_id, wire_args, wire_kwargs, queue, now, None, None)
        try:
            await app.publish_one(queue, outgoing)
        except PublishOutcomeUnknownError as exc:
            raise outcome_unknown(exc, self.name, [task_id]) from exc
        return AsyncResult(app, task_id, self)

    async def send(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue one run, fire-and-forget; return the task id."""
        return (await self.delay(*args, **kwargs)).id

    async def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        priority: int | None = None,
        unique: bool = False,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> AsyncResult[R]:
        """Enqueue one run with per-call options.

        Args:
            args: Positional arguments.
            kwargs: Keyword arguments.
            countdown: Run no sooner than this many seconds from now.
            eta: Run no sooner than this aware datetime (exclusive with ``countdown``).
            queue: Publish to this queue instead of the task's default.
            task_id: Use this id (for example an idempotency key) instead of a random one.
            timeout: This call's hard time limit in seconds, instead of the task's (its
                retries keep it).
            soft_timeout: This call's soft time limit in seconds, instead of the task's.
            headers: Message headers, readable in the task as ``ctx.headers`` (see
                :mod:`chicory.headers` for what names and values may be).
            priority: This call's priority, 0 to 9, higher first (instead of the task's;
                see :mod:`chicory.priority`).
            unique: Enqueue only if no run holds the key ``task_id`` in the queue (see
                :mod:`chicory.unique`); the result's ``duplicate`` says whether one did.
            unique_key: Like ``unique``, with this key instead of the task id.
            unique_for: Hold the key at least this long after the enqueue (seconds or a
                ``timedelta``), even if the run finished sooner; implies ``unique``.

        Returns:
            The run's result handle. After a unique enqueue that found the key held, its
            ``duplicate`` is true and its ``id`` is the task id of the run holding the key.

        Raises:
            ArgumentValidationError: the arguments do not fit the signature or its types.
            CapabilityError: a priority is given and the broker does not honour priorities,
                or a unique enqueue on a broker without ``unique_enqueue``.
            ConfigurationError: a time limit is not a positive number, or the soft one is
                not below the hard one; the priority is not an integer from 0 to 9;
                ``unique`` without ``task_id`` or ``unique_key``.
            InvalidHeaderError: a header cannot be sent.
            MessageTooLargeError: the encoded message is over the app's size limit.
            BrokerConnectionError: the broker could not be reached; the task was not
                enqueued, so calling again cannot duplicate it.
            PublishOutcomeUnknownError: the connection failed after the message was sent,
                so the task may or may not be enqueued (see its message for what to do).
        """
        now = self.app.utcnow()
        eta = due_time(countdown, eta, now)
        wire_args, wire_kwargs = self.signature.bind(args, kwargs or {}, self.validation_mode)
        key = None
        if unique or unique_key is not None or unique_for is not None:
            key = unique_key if unique_key is not None else task_id
            if not key:
                raise ConfigurationError(
                    f"task {self.name!r}: unique=True needs the key: pass task_id=... (the "
                    "id is the key) or unique_key=..."
                )
            check_key(key)
        if task_id is None:
            task_id = new_task_id()
        else:
            check_task_id(task_id)
        queue = queue or self.queue
        limits: dict[str, str] | None = None
        if timeout is not None or soft_timeout is not None:
            check_limits(
                f"task {self.name!r}",
                self.timeout if timeout is None else timeout,
                soft_timeout,
            )
            limits = limit_headers(timeout, soft_timeout)
        if priority is not None or self.priority is not None:
            limits = {**(limits or {}), **self._priority_header(priority)}
        if key is not None:
            message = OutgoingTask(
                task=self.name,
                id=task_id,
                args=wire_args,
                kwargs=wire_kwargs,
                queue=queue,
                eta=eta,
                headers=dict(headers or {}),
                created_at=now,
            )
            return await enqueue_unique(self, message, key, unique_for, limits)
        app = self.app
        if app.publish_hooks or headers:
            message = OutgoingTask(
                task=self.name,
                id=task_id,
                args=wire_args,
                kwargs=wire_kwargs,
                queue=queue,
                eta=eta,
                headers=dict(headers or {}),
                created_at=now,
            )
            queue, outgoing = app.prepare(message, limits)
            await self._publish_one(queue, outgoing, message.id)
            return AsyncResult(app, message.id, self)
        outgoing = self._plain_message(task_id, wire_args, wire_kwargs, queue, now, eta, limits)
        await self._publish_one(queue, outgoing, task_id)
        return AsyncResult(app, task_id, self)

    def _plain_message(
        self,
        task_id: str,
        wire_args: list[Any],
        wire_kwargs: dict[str, Any],
        queue: str,
        now: datetime,
        eta: datetime | None,
        headers: dict[str, str] | None,
    ) -> OutgoingMessage:
        """The encoded message of one call without publish middleware, with Chicory's own
        ``headers`` (time limits, priority) only."""
        body, sent = self.app.codec.encode_fields(
            task_id,
            self.name,
            wire_args,
            wire_kwargs,
            queue=queue,
            created_at=now,
            eta=eta,
            headers=headers,
        )
        return outgoing_message(body, sent, eta)

    def _priority_header(self, priority: int | None) -> dict[str, str]:
        """The priority header of a call (``priority``, else the task's).

        Raises:
            ConfigurationError: ``priority`` is not an integer from 0 to 9.
            CapabilityError: the broker does not honour priorities.
        """
        if priority is None:
            priority = self.priority
        else:
            check_priority(f"a call of task {self.name!r}", priority)
            require_priorities(self.app.broker, f"a call of task {self.name!r}")
        return {PRIORITY_HEADER: str(priority)}

    async def _publish_one(self, queue: str, outgoing: OutgoingMessage, task_id: str) -> None:
        """Publish one message; an unknown outcome names the task and what to do."""
        try:
            await self.app.publish_one(queue, outgoing)
        except PublishOutcomeUnknownError as exc:
            raise outcome_unknown(exc, self.name, [task_id]) from exc

    async def delay_many(
        self,
        calls: Iterable[Sequence[Any] | Mapping[str, Any]],
        *,
        queue: str | None = None,
        headers: Mapping[str, str] | None = None,
        unique_keys: Sequence[str] | None = None,
        unique_for: float | timedelta | None = None,
        priority: int | None = None,
    ) -> list[AsyncResult[R]]:
        """Enqueue many runs in one batch (one round trip per queue where the broker allows).

        Args:
            calls: One item per run: a tuple/list of positional arguments, or a mapping of
                keyword arguments.
            queue: Publish to this queue instead of the task's default.
            headers: Headers for every message of the batch (see :meth:`apply_async`).
            unique_keys: One unique key per call: each run is enqueued only if its key is
                free, as with ``apply_async(unique_key=...)`` (one atomic step, and one
                round trip, per run); each result's ``duplicate`` tells.
            unique_for: With ``unique_keys``: hold each key at least this long.
            priority: The priority of every message of the batch (instead of the task's).

        Raises:
            ArgumentValidationError: one of the calls is invalid; nothing is enqueued.
            ConfigurationError: ``unique_keys`` does not give one key per call; the priority
                is not an integer from 0 to 9.
            CapabilityError: ``unique_keys`` on a broker without ``unique_enqueue``, or a
                priority on a broker that does not honour them.
            InvalidHeaderError: a header cannot be sent; nothing is enqueued.
            BrokerConnectionError: the broker could not be reached; nothing was enqueued.
            PublishOutcomeUnknownError: the connection failed after the messages were sent,
                so some or all may be enqueued.
        """
        return await enqueue_many(
            self,
            calls,
            queue=queue,
            headers=headers,
            unique_keys=unique_keys,
            unique_for=unique_for,
            priority=priority,
        )

    def message(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        now: datetime | None = None,
    ) -> TaskMessage:
        """Build (and validate) the wire message for one run without publishing it.

        ``now`` (the creation time) may be passed to build a batch with one clock read.
        """
        now = now or self.app.utcnow()
        eta = due_time(countdown, eta, now)
        wire_args, wire_kwargs = self.signature.bind(args, kwargs or {}, self.validation_mode)
        if task_id is not None:
            check_task_id(task_id)
        return TaskMessage(
            id=task_id or new_task_id(),
            task=self.name,
            args=wire_args,
            kwargs=wire_kwargs,
            queue=queue or self.queue,
            created_at=now,
            eta=eta,
        )
