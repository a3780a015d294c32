"""Handles to a task's outcome: :class:`AsyncResult`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from chicory.errors import (
    CapabilityError,
    ConfigurationError,
    TaskCancelledError,
    TaskFailedError,
)
from chicory.inspection import RecordForgetting
from chicory.loops import running_loop
from chicory.progress import feed_of
from chicory.records import (
    NOT_SUCCESS,
    ResultRecord,
    TaskProgress,
    TaskState,
    decode_record,
    progress_of,
    success_result,
)
from chicory.revocation import revocations_of

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.backend import ResultBackend
    from chicory.task import Task

__all__ = ["AsyncResult", "DuplicateResult"]

T = TypeVar("T")


class AsyncResult(Generic[T]):
    """The outcome of one task, fetched from the app's result backend.

    ``get`` waits on the backend's completion signal (an event, a blocking pop or pub/sub,
    depending on the backend), never in a sleep-polling loop.

    Args:
        app: The app whose result backend holds the record.
        task_id: The task's id.
        task: The task object, when known (used to rebuild typed results).

    Attributes:
        id: The task id.
        duplicate: True when the unique enqueue that returned this handle enqueued nothing
            because its key was held (:mod:`chicory.unique`): ``id`` is then the task id of
            the run holding the key. False for every other handle.
    """

    __slots__ = ("_app", "_task", "id")

    duplicate: bool = False  # a class attribute: nothing per handle (see DuplicateResult)

    def __init__(self, app: Chicory, task_id: str, task: Task[..., T] | None = None) -> None:
        self._app = app
        self._task = task
        self.id = task_id

    def __repr__(self) -> str:
        name = self._task.name if self._task is not None else "?"
        extra = " duplicate" if self.duplicate else ""
        return f"<AsyncResult {name} {self.id}{extra}>"

    async def get(
        self,
        timeout: float | None = None,
        *,
        on_progress: Callable[[TaskProgress], object] | None = None,
    ) -> T:
        """Wait for the task to finish and return its value.

        Args:
            timeout: Seconds to wait; ``None`` waits forever.
            on_progress: Called with each progress report of the task (``ctx.set_progress``)
                as the result backend pushes it while waiting, starting with the last one
                already stored; it may be a coroutine function (awaited). Needs a result
                backend that pushes progress (:mod:`chicory.progress`).

        Raises:
            TaskFailedError: the task failed; carries the remote type, message and traceback.
            TaskCancelledError: the task was cancelled (see :meth:`cancel`).
            TimeoutError: no final result arrived within ``timeout``.
            ConfigurationError: the task was declared with ``ignore_result=True``.
            CapabilityError: ``on_progress`` was given and the result backend does not push
                progress.
        """
        if self._task is not None and self._task.ignore_result:
            raise ConfigurationError(
                f"task {self._task.name!r} is declared with ignore_result=True, so no result "
                "is stored; remove ignore_result to await its value"
            )
        app = self._app
        if app._backend_ready and app._home.loop is running_loop():
            backend = app.backend
        else:
            backend = await app.connected_backend()
        if on_progress is None:
            data = await backend.wait(self.id, timeout)
        else:
            data = await self._wait_reporting(backend, timeout, on_progress)
        if data is None:
            raise TimeoutError(f"task {self.id} did not finish within {timeout} s")
        value: Any = success_result(data)  # the common case, without building the record
        if value is not NOT_SUCCESS:
            if self._task is not None:
                value = self._task.signature.load_result(value)
            return value  # type: ignore[no-any-return]
        record = decode_record(data, ResultRecord)
        if record.state is TaskState.CANCELLED:
            raise TaskCancelledError(self.id, record.error.message if record.error else "cancelled")
        if record.state is TaskState.FAILURE:
            error = record.error
            raise TaskFailedError(
                self.id,
                error.type if error else "UnknownError",
                error.message if error else "the task failed",
                error.traceback if error else None,
            )
        value = record.result
        if self._task is not None:
            value = self._task.signature.load_result(value)
        return value  # type: ignore[no-any-return]

    async def _wait_reporting(
        self,
        backend: ResultBackend,
        timeout: float | None,
        on_progress: Callable[[TaskProgress], object],
    ) -> bytes | None:
        """``backend.wait``, calling ``on_progress`` with each progress record pushed
        meanwhile (and the one stored before, if any)."""
        feed = feed_of(backend, needed_for="get(on_progress=...)")
        task_id = self.id

        last: list[bytes | None] = [None]

        async def report(data: bytes | None) -> None:
            if data is None or data == last[0]:  # the record read first may be pushed too
                return
            last[0] = data
            progress = progress_of(data)
            if progress is not None:
                outcome = on_progress(progress)
                if inspect.isawaitable(outcome):
                    await outcome

        async with feed.watch_progress(task_id) as updates:
            await report(await backend.get(task_id))  # subscribed: nothing is missed after

            async def relay() -> None:
                async for data in updates:
                    await report(data)

            async with anyio.create_task_group() as group:
                group.start_soon(relay)
                final = await backend.wait(task_id, timeout)
                group.cancel_scope.cancel()
        return final

    async def info(self) -> ResultRecord | None:
        """Return the task's current record, or ``None`` while it is ``PENDING``."""
        backend = await self._app.connected_backend()
        data = await backend.get(self.id)
        return None if data is None else decode_record(data, ResultRecord)

    async def progress(self) -> TaskProgress | None:
        """The progress the running task last reported (``ctx.set_progress``), or ``None``
        when it reported none, has not started, or has finished (its final record holds
        its result instead).

        Raises:
            ResultBackendError: the result backend could not be reached.
        """
        backend = await self._app.connected_backend()
        data = await backend.get(self.id)
        return None if data is None else progress_of(data)

    async def state(self) -> TaskState:
        """Return the task's current state (``PENDING`` when no record exists)."""
        record = await self.info()
        return TaskState.PENDING if record is None else record.state

    async def ready(self) -> bool:
        """Whether the task has finished (succeeded, failed or was cancelled)."""
        return (await self.state()).final

    async def failed(self) -> bool:
        """Whether the task has finished in failure."""
        return (await self.state()) is TaskState.FAILURE

    async def cancel(self, *, ttl: float | None = None) -> None:
        """Cancel the task, wherever it is: queued, delayed, retrying or running.

        Writes a revocation record for the task id to the result backend, kept for ``ttl``
        seconds, and pushes it to every worker at once (:mod:`chicory.revocation`). A worker
        that receives the task after that does not run it; a worker running it now stops it
        (an async task at its next ``await``, a sync task when it checks ``ctx.cancelled``
        or returns). Either way the task ends ``CANCELLED`` and :meth:`get` raises
        :class:`~chicory.errors.TaskCancelledError`, unless it had finished before the
        request reached it (its result then stands).

        Args:
            ttl: Seconds the revocation is kept (default: the app's ``result_ttl``); a task
                that reaches a worker only after it expired (a far-off ``eta``) runs. Use
                ``chicory cancel``, which also removes a delayed task from its queue.

        Raises:
            CapabilityError: the result backend keeps no revocation records.
            ResultBackendError: the result backend could not be reached.
        """
        backend = await self._app.connected_backend()
        revocations = revocations_of(backend, needed_for="cancelling a task")
        await revocations.revoke(self.id, ttl=self._app.result_ttl if ttl is None else ttl)

    async def forget(self) -> bool:
        """Delete the task's stored record (its state reads ``PENDING`` again).

        Returns:
            Whether there was a record.

        Raises:
            CapabilityError: the result backend cannot delete records.
            ResultBackendError: the result backend could not be reached.
        """
        backend = await self._app.connected_backend()
        if not isinstance(backend, RecordForgetting):
            raise CapabilityError(
                f"forgetting a result needs a result backend that can delete records, and "
                f"{backend!r} cannot (it has no forget method)"
            )
        return await backend.forget(self.id)


class DuplicateResult(AsyncResult[T]):
    """What a unique enqueue returns when its key was held: the handle of the run holding
    it, with ``duplicate`` True (:mod:`chicory.unique`)."""

    __slots__ = ()

    duplicate = True
