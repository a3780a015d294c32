"""Which event loop, and which process, an app's connections belong to.

Connections made on one asyncio event loop (sockets registered with its selector, tasks
reading them) cannot be used from another loop. An app remembers the loop it connected on,
its *home*, and every call that needs a connection compares the running loop with it (one
identity check). When another loop calls:

* **The home loop has ended** (closed, or no longer running): the old connections are closed
  as well as can be from the new loop, and new ones are opened there. Successive
  ``asyncio.run()`` calls therefore each get working connections.
* **The home loop still runs in another thread**: :class:`~chicory.errors.EventLoopMismatchError`,
  which says what to do (call from that loop, use the blocking API from other threads, or
  give each loop an app of its own).
* **The process was forked since**: a child must never use the parent's connections, nor
  close them: closing an asyncio socket unregisters it from the epoll set that parent and
  child share, which would silence it in the parent too. The child builds a new broker and
  result backend from the URLs the app was given, and keeps the inherited objects, untouched,
  until it exits (so no finalizer runs on them either). An app given broker or backend
  *instances* cannot be rebuilt: using it in the child raises
  :class:`~chicory.errors.ForkedAppError`.

An app also closes itself when its home loop shuts down: connecting primes an async
generator on the home loop, and ``loop.shutdown_asyncgens()`` — which ``asyncio.run()``,
``asyncio.Runner``, ``anyio.run()`` and pytest-asyncio call before closing a loop — closes it,
which closes the app while its loop can still run the close. Loops closed without that step
leave connections for the next loop to close best-effort.

Outside asyncio (anyio on trio), there is no loop to compare: apps are not bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import anyio

from chicory.errors import EventLoopMismatchError, ForkedAppError
from chicory.producer import Producer

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["KEPT_AFTER_FORK", "LoopHome", "alive_elsewhere", "bound_apps", "running_loop"]

log = logging.getLogger("chicory")

running_loop = asyncio._get_running_loop
"""The event loop running in this thread, or ``None`` (cheap: no exception when none runs)."""

_BOUND: weakref.WeakSet[Chicory] = weakref.WeakSet()
"""Apps holding connections: the ones a forked child must move off the parent's."""

KEPT_AFTER_FORK: list[object] = []
"""What a forked child inherited and must never touch, finalize included: kept until exit."""


def bound_apps() -> list[Chicory]:
    """The apps of this process holding connections right now."""
    return list(_BOUND)


def alive_elsewhere(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` still runs (in another thread than the caller's, if it is not running
    here): its connections are in use there."""
    return not loop.is_closed() and loop.is_running()


def _after_fork_in_child() -> None:
    for app in list(_BOUND):
        app._home.forked()
    _BOUND.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class LoopHome:
    """The home of one app's connections: its loop, its connect lock, and moving them.

    Attributes:
        loop: The loop the connections belong to (``None``: not connected, or not asyncio).
        lock: Serializes connecting on the home loop (a new lock for each home).
        stale: The connections belong to a loop that ended; close them before connecting.
        inherited: The connections were inherited through ``fork()``: never touch them.
    """

    __slots__ = ("__weakref__", "_closer", "epoch", "inherited", "lock", "loop", "stale")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lock = anyio.Lock()
        self.stale = False
        self.inherited = False
        self.epoch = object()
        self._closer: AsyncGenerator[None, None] | None = None

    def forked(self) -> None:
        """In a forked child: the connections are the parent's (called by the fork hook)."""
        KEPT_AFTER_FORK.append((self.loop, self._closer))
        self.loop, self._closer = None, None
        self.inherited = True
        self.stale = False
        self.epoch = object()

    async def enter(self, app: Chicory, loop: asyncio.AbstractEventLoop | None) -> None:
        """Make ``loop`` (the running one, not the home) the home of ``app``'s connections.

        Raises:
            EventLoopMismatchError: the home loop still runs in another thread.
            ForkedAppError: the connections were inherited and cannot be rebuilt.
        """
        old = self.loop
        if self.inherited:
            _rebuild_after_fork(app)
            self.inherited = False
        elif old is not None and alive_elsewhere(old):
            raise EventLoopMismatchError(
                f"{app!r} is connected on another event loop, which still runs in another "
                f"thread ({old!r}); connections cannot move between running loops. Call it "
                "from that loop, use the blocking API (task.blocking.delay(...)) from other "
                "threads, or give each event loop an app of its own"
            )
        elif old is not None:
            self.stale = True  # that loop ended: close its connections before opening new ones
        self.loop = loop
        self.lock = anyio.Lock()
        self.epoch = epoch = object()
        self._closer = None
        if loop is not None:
            _BOUND.add(app)
            closer = _close_at_loop_end(app, epoch)
            await closer.asend(None)  # runs to its ``yield``: now owned by ``loop``
            self._closer = closer

    def left(self, app: Chicory) -> None:
        """The app closed its connections: it has no home until it connects again."""
        self.loop, self._closer = None, None
        self.stale = False
        self.epoch = object()
        _BOUND.discard(app)


def _rebuild_after_fork(app: Chicory) -> None:
    """In a forked child: a new broker and backend for ``app``, from its URLs.

    Raises:
        ForkedAppError: a connected broker or backend was given as an instance.
    """
    broker, backend, broker_options, backend_options = app._targets
    for given, ready, what in (
        (broker, app._broker_ready, "broker"),
        (backend, app._backend_ready, "result backend"),
    ):
        if ready and not (given is None or isinstance(given, str)):
            raise ForkedAppError(
                f"{app!r} was connected before this process forked, and its {what} was "
                "given as an instance, which cannot be rebuilt here (the parent's "
                "connections must not be used or closed in a child). Give the app URLs "
                "(Chicory(broker='redis://...')), or connect only after forking"
            )
    # The parent's objects are kept, never finalized: a closing asyncio socket would
    # unregister itself from the epoll set the parent shares with this process.
    KEPT_AFTER_FORK.append((app.broker, app.backend, app._producer))
    if app._broker_ready:
        app.broker = app._build_broker(broker, broker_options)
    if app._backend_ready:
        app.backend = app._build_backend(backend, broker, backend_options)
    app._broker_ready = app._backend_ready = False
    app._producer = Producer(app._publish_now)


async def _close_at_loop_end(app: Chicory, epoch: object) -> AsyncGenerator[None, None]:
    """Closed by ``loop.shutdown_asyncgens()``: close ``app`` if it still lives on that loop."""
    try:
        yield
    finally:
        if app._home.epoch is epoch:
            try:
                await app.close()
            except Exception:
                log.exception("closing %r at the end of its event loop failed", app)
