"""Middleware: your code around every task, on the producer's side and the worker's.

A middleware is an object with any of four methods (subclass :class:`Middleware`, whose
methods do nothing, and override the ones you need):

* ``before_publish(message)``, on the producer's side: sees each :class:`OutgoingTask`
  before it is encoded, may change it (its headers above all: trace context goes there) and
  may refuse it by raising (``delay()`` then raises that exception and nothing is sent; in a
  ``delay_many`` batch, nothing of the batch is sent). Synchronous: it runs in the caller of
  ``delay()``, once per message, before any batching (through the blocking API, on its
  event loop, in the calling thread's context).
* ``execute(ctx, call_next)``, in the worker: wraps each run of a task. ``await
  call_next(ctx)`` runs the rest of the chain and then the task function; it returns the
  function's value or raises its exception, the live object (``Retry`` and ``Fail`` too,
  when the task calls ``ctx.retry()`` or ``ctx.fail()``). What ``execute`` returns is the
  task's value; what it raises is the task's exception, handled by the retry policy like any
  other. ``ctx`` is the run's :class:`~chicory.context.TaskContext` (also for tasks that do
  not declare one); ``ctx.will_retry(exc)`` says whether an exception will be retried.
* ``on_worker_start(worker)`` and ``on_worker_stop(worker)``: awaited when a worker has
  connected, before it takes any task, and after it has drained, when no task runs any more.
  Build shared resources in the first (a database pool, an HTTP client), put them in
  ``worker.resources`` and tasks find them in ``ctx.resources``; close them in the second.

Order is the order of ``Chicory(middleware=[...])`` (then ``app.add_middleware``): the first
middleware's ``before_publish`` runs first, its ``execute`` is the outermost and its
``on_worker_start`` runs first; ``on_worker_stop`` runs in reverse order, and only for
middleware whose ``on_worker_start`` completed. A middleware that overrides only some
methods costs nothing on the others' paths, and an app without middleware runs the path it
ran before middleware existed: the worker collects the ``execute`` methods once when it is
created (with none, it calls the task function directly), and ``delay()`` looks at one
tuple.

A middleware object may also implement observer hooks (``@hookimpl def
chicory_task_dead_lettered(event)``): they are registered for the app it is added to.

Installed plugins can offer middleware by name (``chicory_register_middleware``, see
:mod:`chicory.plugins.hookspecs`): ``Chicory(middleware=["prometheus"])`` or ``chicory worker
--middleware prometheus`` builds it with no arguments. Installing a plugin never turns its
middleware on by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from chicory.broker import OutgoingMessage
from chicory.codec import Codec
from chicory.context import TaskContext
from chicory.envelope import TaskMessage
from chicory.errors import ConfigurationError
from chicory.headers import check_headers

if TYPE_CHECKING:
    from chicory.worker.worker import Worker

__all__ = [
    "CallNext",
    "ExecuteChain",
    "Middleware",
    "OutgoingTask",
    "overrides",
    "prepare",
]

CallNext = Callable[[TaskContext], Awaitable[Any]]
"""What an ``execute`` method awaits to run the rest of the chain and the task."""


@attrs.define(kw_only=True, slots=True)
class OutgoingTask:
    """One message on its way to the broker, as ``before_publish`` sees it (mutable).

    Attributes:
        task: The task's registered name (changing it sends the message to that task).
        id: The task id.
        args: Positional arguments, already validated and converted to JSON values.
        kwargs: Keyword arguments, likewise.
        queue: The queue it goes to.
        eta: Aware-UTC time before which it must not run, or ``None``.
        headers: Its headers; add to them freely (names starting with ``chicory-`` are
            reserved; see :mod:`chicory.headers`). Checked after every middleware ran.
        created_at: When it was created (aware UTC).
    """

    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    eta: datetime | None = None
    headers: dict[str, str] = attrs.field(factory=dict)
    created_at: datetime

    @classmethod
    def of(cls, message: TaskMessage) -> OutgoingTask:
        """The outgoing form of a built message (no headers yet)."""
        return cls(
            task=message.task,
            id=message.id,
            args=message.args,
            kwargs=message.kwargs,
            queue=message.queue,
            eta=message.eta,
            created_at=message.created_at,
        )


class Middleware:
    """Base class of middleware: every method does nothing; override what you need.

    See :mod:`chicory.middleware` for when each method is called and what it may do.
    """

    def before_publish(self, message: OutgoingTask) -> None:
        """Called for each message before it is encoded; change it, or raise to refuse it."""

    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        """Wrap one run of a task: ``return await call_next(ctx)`` runs it."""
        return await call_next(ctx)

    async def on_worker_start(self, worker: Worker) -> None:
        """Called when a worker has connected, before it takes any task."""

    async def on_worker_stop(self, worker: Worker) -> None:
        """Called when a worker has drained, after its last task."""


def prepare(
    codec: Codec,
    hooks: Sequence[Callable[[OutgoingTask], None]],
    message: OutgoingTask,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, OutgoingMessage]:
    """Run the publish ``hooks`` on ``message``, check its headers and eta, encode it.

    ``extra`` are Chicory's own headers for it (a call's time limits): added after the
    check, before the message is signed.

    Returns:
        The queue it goes to and the encoded message.

    Raises:
        InvalidHeaderError: a header cannot be sent (see :mod:`chicory.headers`).
        ConfigurationError: a middleware set an ``eta`` that is not an aware datetime.
        MessageTooLargeError: the encoded message is over the codec's size limit.
        Exception: whatever a middleware raised to refuse the message.
    """
    for hook in hooks:
        hook(message)
    headers = check_headers(message.headers)
    if extra:
        headers.update(extra)
    eta = message.eta
    if eta is not None and (not isinstance(eta, datetime) or eta.tzinfo is None):
        raise ConfigurationError(
            f"a middleware set the eta of task {message.task!r} to {eta!r}; it must be an "
            "aware datetime or None"
        )
    if eta is not None and eta <= message.created_at:
        eta = None
    body, sent = codec.encode_fields(
        message.id,
        message.task,
        message.args,
        message.kwargs,
        queue=message.queue,
        created_at=message.created_at,
        eta=eta,
        headers=headers,
    )
    return message.queue, OutgoingMessage(body=body, headers=sent, not_before=eta)


def overrides(middleware: object, method: str) -> bool:
    """Whether ``middleware`` has its own ``method`` (not :class:`Middleware`'s no-op).

    An object that does not subclass :class:`Middleware` counts as overriding every method
    it has.
    """
    own = getattr(type(middleware), method, None)
    if own is None:
        return False
    return own is not getattr(Middleware, method)


class ExecuteChain:
    """The ``execute`` methods of a worker's middleware, composed once, outermost first.

    Args:
        middlewares: The app's middleware, in order.
    """

    __slots__ = ("_layers",)

    def __init__(self, middlewares: Sequence[object]) -> None:
        self._layers: tuple[Callable[[TaskContext, CallNext], Awaitable[Any]], ...] = tuple(
            m.execute  # type: ignore[attr-defined]
            for m in middlewares
            if overrides(m, "execute")
        )

    def __bool__(self) -> bool:
        return bool(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def run(self, ctx: TaskContext, innermost: CallNext) -> Awaitable[Any]:
        """Run the chain around ``innermost`` (which runs the task function)."""
        layers = self._layers
        call: CallNext = innermost
        for layer in layers[:0:-1]:  # all but the outermost, innermost first
            call = _bind(layer, call)
        return layers[0](ctx, call)


def _bind(
    layer: Callable[[TaskContext, CallNext], Awaitable[Any]], call_next: CallNext
) -> CallNext:
    def call(ctx: TaskContext) -> Awaitable[Any]:
        return layer(ctx, call_next)

    return call
