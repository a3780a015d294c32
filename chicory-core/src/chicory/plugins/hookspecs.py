"""Chicory's hook specifications (specs only). Implement them with :data:`hookimpl`.

Two kinds of hooks:

* **Registration** (``chicory_register_*``) is called once per app, must be cheap and pure,
  and returns :class:`~chicory.plugins.specs.BackendSpec` or
  :class:`~chicory.plugins.specs.MiddlewareSpec` values. It must not import driver
  libraries or open connections.
* **Lifecycle observers** (``chicory_task_*``, ``chicory_worker_*``) are told what happened.
  They run outside the task's path, in the worker's event dispatcher: an observer that
  raises is logged and ignored, and one that is too slow makes events be dropped (counted
  and logged), never tasks delayed. They must not block for long: they run on the event
  loop thread.
"""

from __future__ import annotations

import pluggy

from chicory.plugins.events import TaskEvent, WorkerEvent
from chicory.plugins.specs import BackendSpec, MiddlewareSpec

PROJECT = "chicory"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def chicory_register_brokers() -> list[BackendSpec]:  # type: ignore[empty-body]
    """Return the brokers this plugin offers.

    Must: return specs with a unique name and unique URL schemes, and lazy factories.
    Must not: import the driver, connect, or depend on configuration.
    """


@hookspec
def chicory_register_result_backends() -> list[BackendSpec]:  # type: ignore[empty-body]
    """Return the result backends this plugin offers (same rules as brokers)."""


@hookspec
def chicory_register_middleware() -> list[MiddlewareSpec]:  # type: ignore[empty-body]
    """Return the middleware this plugin offers by name (see :mod:`chicory.middleware`).

    Must: return specs with unique names and lazy factories.
    Must not: import the library the middleware wraps, or enable anything: an app turns a
    middleware on by naming it.
    """


@hookspec
def chicory_register_commands(tree: object) -> None:
    """Add this plugin's commands to the ``chicory`` command line.

    ``tree`` is a :class:`chicory.cli.parsing.Tree`: add a group with
    ``tree.group("NAME", help)`` and its actions with ``tree.action("NAME", "ACTION", help,
    handler)`` (``handler(args) -> exit code``), and give every option a help text.

    Must: name the group after the plugin (``chicory postgres ...``), import nothing heavy
    (the handler imports the driver when it runs), and leave the core commands alone.
    Must not: connect or depend on configuration.
    """


@hookspec
def chicory_task_received(event: TaskEvent) -> None:
    """A worker took a delivery off its broker (before decoding decisions are acted on)."""


@hookspec
def chicory_task_started(event: TaskEvent) -> None:
    """A task function is about to run (after an at-most-once pre-ack succeeded)."""


@hookspec
def chicory_task_succeeded(event: TaskEvent) -> None:
    """A task returned; its result is stored and its delivery settled."""


@hookspec
def chicory_task_retried(event: TaskEvent) -> None:
    """A task raised and will run again after ``event.delay`` seconds."""


@hookspec
def chicory_task_failed(event: TaskEvent) -> None:
    """A task failed for good (retries exhausted, ``ctx.fail()``, not retryable)."""


@hookspec
def chicory_task_dead_lettered(event: TaskEvent) -> None:
    """A message was moved to the dead letters with ``event.reason``."""


@hookspec
def chicory_task_redelivered(event: TaskEvent) -> None:
    """A worker received a message delivered before (``event.delivery_count`` > 1): a worker
    died or handed it back, or its lease expired."""


@hookspec
def chicory_task_lease_lost(event: TaskEvent) -> None:
    """A worker's ack was refused because the delivery's lease had expired: another worker
    may run (or have run) the task. ``event.reason`` says which ack."""


@hookspec
def chicory_worker_started(event: WorkerEvent) -> None:
    """A worker connected and began consuming."""


@hookspec
def chicory_worker_stopping(event: WorkerEvent) -> None:
    """A worker stopped fetching and is draining."""
