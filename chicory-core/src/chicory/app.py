"""The application object: task registry, configuration, and the broker/backend it talks to.

:class:`Chicory` is assembled from a few parts, each in a module of its own: which broker
and result backend it gets (:mod:`chicory.targets`), how it connects to them, publishes and
closes (:mod:`chicory.connections`), and its periodic tasks
(:mod:`chicory.scheduling.declaring`). Registering tasks and middleware is here.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, TypeVar, overload

from chicory.backend import ResultBackend
from chicory.broker import Broker
from chicory.clock import utcnow
from chicory.codec import Codec
from chicory.connections import AppConnections
from chicory.context import TaskContext
from chicory.envelope import DEFAULT_MAX_MESSAGE_BYTES
from chicory.errors import ConfigurationError, TaskRegistrationError
from chicory.flow import RateLimit
from chicory.loops import LoopHome
from chicory.middleware import Middleware, OutgoingTask, overrides
from chicory.modes import DeliveryMode, ValidationMode
from chicory.plugins import PluginHost
from chicory.producer import Producer
from chicory.retry import RetryPolicy
from chicory.scheduling.declaring import PeriodicTasks
from chicory.targets import (
    BACKEND_ENV,
    BROKER_ENV,
    DEFAULT_URL,
    build_backend,
    build_broker,
    describe,
)
from chicory.task import Task
from chicory.validation import make_value_converter

if TYPE_CHECKING:
    from chicory.scheduling.schedule import Schedule

__all__ = ["BACKEND_ENV", "BROKER_ENV", "DEFAULT_URL", "Chicory"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_RESULT_BYTES: Final = 1024 * 1024
"""Largest result record stored by default (see ``docs/reliability.md``, sizing)."""


class Chicory(AppConnections, PeriodicTasks):
    """A Chicory application: declare tasks on it, enqueue them, run workers for it.

    Args:
        broker: A URL (its scheme picks the plugin), a plugin name, or a broker instance.
            Defaults to ``$CHICORY_BROKER_URL``, else ``memory://``.
        backend: The same for the result backend. Defaults to ``$CHICORY_BACKEND_URL``, else
            the broker's URL when that plugin also offers a result backend, else ``memory://``.
        plugins: Extra plugin objects (observers, backends) for this app only.
        middleware: Middleware for this app, in order: instances (see
            :mod:`chicory.middleware`) or names of middleware installed plugins offer.
        load_entry_points: Discover installed plugins through the ``chicory`` entry points.
        default_queue: Queue of tasks that name none.
        delivery_mode: Default delivery mode of tasks that name none.
        retry_policy: Default retry policy of tasks that name none.
        validation_mode: Default validation mode of tasks that name none.
        result_ttl: Seconds a result is kept (a task's own ``result_ttl`` overrides it).
        max_result_bytes: Largest result record a worker stores (1 MiB by default; a
            task's own ``max_result_bytes`` overrides it): a task returning more fails with
            :class:`~chicory.errors.ResultTooLargeError`. ``None`` stores results of any
            size.
        max_message_bytes: Largest encoded message ``delay()`` accepts, and a worker reads
            (a larger one is dead-lettered unread).
        signing_key: Sign messages with HMAC-SHA256 and reject unsigned ones (what that
            protects against and what not: :mod:`chicory.signing`).
        verification_keys: More keys whose signatures a worker accepts, beside
            ``signing_key``: for rotating keys without a stop (see :mod:`chicory.signing`).
        track_started: Record a ``STARTED`` state when a run begins (default off: it costs
            one more result write per run).
        broker_options: Keyword options for the broker factory.
        backend_options: Keyword options for the result backend factory.

    Attributes:
        utcnow: Where the app reads the current aware-UTC time: messages' creation times,
            ``countdown`` due times, retries' due times (default
            :func:`chicory.clock.utcnow`). ``chicory.testkit`` points it at its virtual clock.
    """

    def __init__(
        self,
        broker: str | Broker | None = None,
        backend: str | ResultBackend | None = None,
        *,
        plugins: Iterable[object] = (),
        middleware: Iterable[Middleware | str] = (),
        load_entry_points: bool = True,
        default_queue: str = "default",
        delivery_mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        retry_policy: RetryPolicy | None = None,
        validation_mode: ValidationMode = ValidationMode.INPUTS,
        result_ttl: float = 86400.0,
        max_result_bytes: int | None = DEFAULT_MAX_RESULT_BYTES,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        signing_key: bytes | str | None = None,
        verification_keys: Iterable[bytes | str] = (),
        track_started: bool = False,
        broker_options: Mapping[str, Any] | None = None,
        backend_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not result_ttl > 0:
            raise ConfigurationError(f"result_ttl must be positive, got {result_ttl}")
        if max_result_bytes is not None and max_result_bytes < 1:
            raise ConfigurationError(
                f"max_result_bytes must be at least 1 (or None), got {max_result_bytes}"
            )
        self.plugins = PluginHost(load_entry_points=load_entry_points, plugins=plugins)
        self.default_queue = default_queue
        self.delivery_mode = DeliveryMode(delivery_mode)
        self.retry_policy = retry_policy or RetryPolicy()
        self.validation_mode = ValidationMode(validation_mode)
        self.result_ttl = result_ttl
        self.max_result_bytes = max_result_bytes
        self.track_started = track_started
        key = signing_key.encode() if isinstance(signing_key, str) else signing_key
        others = [k.encode() if isinstance(k, str) else k for k in verification_keys]
        try:
            self.codec = Codec(
                max_message_bytes=max_message_bytes, signing_key=key, verification_keys=others
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.value_converter = make_value_converter()
        self.tasks: dict[str, Task[..., Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        """The app's periodic tasks by name (see :meth:`periodic`)."""
        self.utcnow: Callable[[], datetime] = utcnow
        self._targets = (broker, backend, dict(broker_options or {}), dict(backend_options or {}))
        self.broker: Broker = self._build_broker(broker, self._targets[2])
        self.backend: ResultBackend = self._build_backend(backend, broker, self._targets[3])
        self._home = LoopHome()
        self._producer = Producer(self._publish_now)
        self._transactions = 0  # open app.transaction() blocks (none: nothing checked)
        self._broker_ready = False
        self._backend_ready = False
        self.middleware: list[Middleware] = []
        """The app's middleware, in order (add more with :meth:`add_middleware`)."""
        self.publish_hooks: tuple[Callable[[OutgoingTask], None], ...] = ()
        """The ``before_publish`` methods of :attr:`middleware` that do something."""
        for item in middleware:
            self.add_middleware(item)

    def __repr__(self) -> str:
        return f"<Chicory broker={self.broker_description} tasks={len(self.tasks)}>"

    @property
    def broker_description(self) -> str:
        """The broker for humans: its redacted URL or class name."""
        return describe(self.broker, self._broker_target)

    @property
    def backend_description(self) -> str:
        """The result backend for humans: its redacted URL or class name."""
        return describe(self.backend, self._backend_target)

    # -- tasks ---------------------------------------------------------------------------

    @overload
    def task(
        self, fn: Callable[Concatenate[TaskContext, P], Coroutine[Any, Any, R]]
    ) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[Concatenate[TaskContext, P], R]) -> Task[P, R]: ...

    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        delivery_mode: DeliveryMode | None = None,
        retry_policy: RetryPolicy | None = None,
        ignore_result: bool = False,
        validation_mode: ValidationMode | None = None,
        queue: str | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        track_started: bool | None = None,
        result_ttl: float | None = None,
        max_result_bytes: int | None = None,
        rate_limit: str | RateLimit | None = None,
        concurrency_limit: int | None = None,
        priority: int | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        delivery_mode: DeliveryMode | None = None,
        retry_policy: RetryPolicy | None = None,
        ignore_result: bool = False,
        validation_mode: ValidationMode | None = None,
        queue: str | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        track_started: bool | None = None,
        result_ttl: float | None = None,
        max_result_bytes: int | None = None,
        rate_limit: str | RateLimit | None = None,
        concurrency_limit: int | None = None,
        priority: int | None = None,
    ) -> Any:
        """Register a function as a task; use as ``@app.task`` or ``@app.task(...)``.

        Args:
            fn: The function (when used without parentheses).
            name: Wire name; defaults to ``module.qualname``. Keep it stable across deploys.
            delivery_mode: Overrides the app default.
            retry_policy: Overrides the app default.
            ignore_result: Store no result.
            validation_mode: Overrides the app default.
            queue: Default queue of this task.
            timeout: Seconds a run may take (its hard time limit: the run is stopped).
            soft_timeout: Seconds after which ``TaskSoftTimeoutError`` is raised inside the
                run, so it can clean up before ``timeout`` (below ``timeout``).
            track_started: Record a ``STARTED`` state when a run begins (one more result
                write per run); overrides the app default.
            result_ttl: Seconds this task's results are kept; overrides the app's.
            max_result_bytes: Largest result record stored for this task; overrides the
                app's.
            rate_limit: Starts allowed across every worker, evenly spaced: ``"100/s"``,
                ``"30/m"``, ``"500/h"`` (see :mod:`chicory.flow`).
            concurrency_limit: Most runs at once across every worker.
            priority: Default priority of its messages, 0 to 9, higher first (see
                :mod:`chicory.priority`).

        Raises:
            TaskRegistrationError: the name is taken or the signature cannot be used.
            ConfigurationError: a limit or the priority is malformed.
            CapabilityError: a limit or a priority is set and the broker cannot honour it.
        """

        def register(func: Callable[..., Any]) -> Task[..., Any]:
            task_name = name or f"{func.__module__}.{func.__qualname__}"
            if task_name in self.tasks:
                raise TaskRegistrationError(
                    f"task name {task_name!r} is already registered; pass name=... to tell "
                    "the two apart"
                )
            task: Task[..., Any] = Task(
                self,
                func,
                name=task_name,
                delivery_mode=delivery_mode or self.delivery_mode,
                retry_policy=retry_policy or self.retry_policy,
                ignore_result=ignore_result,
                validation_mode=validation_mode or self.validation_mode,
                queue=queue or self.default_queue,
                timeout=timeout,
                track_started=self.track_started if track_started is None else track_started,
                result_ttl=result_ttl,
                max_result_bytes=max_result_bytes,
                soft_timeout=soft_timeout,
                rate_limit=rate_limit,
                concurrency_limit=concurrency_limit,
                priority=priority,
            )
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else _TaskDecorator(register)

    # -- middleware ------------------------------------------------------------------------

    def add_middleware(self, middleware: Middleware | str) -> Middleware:
        """Add a middleware after the ones the app has (see :mod:`chicory.middleware`).

        Workers created afterwards run it; producers from their next ``delay()`` on. Its
        observer hooks, if it implements any, are registered for this app.

        Args:
            middleware: A middleware, or the name of one an installed plugin offers (built
                with no arguments).

        Returns:
            The middleware added.

        Raises:
            UnknownMiddlewareError: no installed plugin offers a middleware of that name.
        """
        if isinstance(middleware, str):
            built: Any = self.plugins.build_middleware(middleware)
            middleware = built
        assert not isinstance(middleware, str)
        self.middleware.append(middleware)
        self.plugins.register(middleware)
        self.publish_hooks = tuple(
            m.before_publish for m in self.middleware if overrides(m, "before_publish")
        )
        return middleware

    # -- building backends -----------------------------------------------------------------

    def _build_broker(self, target: str | Broker | None, options: dict[str, Any]) -> Broker:
        broker, self._broker_target = build_broker(self.plugins, target, options)
        return broker

    def _build_backend(
        self,
        target: str | ResultBackend | None,
        broker_target: str | Broker | None,
        options: dict[str, Any],
    ) -> ResultBackend:
        del broker_target  # the broker's URL, as it was resolved, is self._broker_target
        backend, self._backend_target = build_backend(
            self.plugins, target, self._broker_target, options
        )
        return backend


class _TaskDecorator:
    """What ``@app.task(...)`` returns: turns a function into a typed :class:`Task`."""

    def __init__(self, register: Callable[[Callable[..., Any]], Task[..., Any]]) -> None:
        self._register = register

    @overload
    def __call__(
        self, fn: Callable[Concatenate[TaskContext, P], Coroutine[Any, Any, R]]
    ) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[Concatenate[TaskContext, P], R]) -> Task[P, R]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Task[P, R]: ...

    def __call__(self, fn: Callable[..., Any]) -> Task[..., Any]:
        return self._register(fn)
