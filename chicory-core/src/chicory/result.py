"""Handles to a task's outcome: :class:`AsyncResult`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from chicory.errors import ConfigurationError, TaskFailedError
from chicory.loops import running_loop
from chicory.records import ResultRecord, TaskState, decode_record

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.task import Task

__all__ = ["AsyncResult"]

T = TypeVar("T")


class AsyncResult(Generic[T]):
    """The outcome of one task, fetched from the app's result backend.

    ``get`` waits on the backend's completion signal (an event, a blocking pop or pub/sub,
    depending on the backend), never in a sleep-polling loop.

    Args:
        app: The app whose result backend holds the record.
        task_id: The task's id.
        task: The task object, when known (used to rebuild typed results).
    """

    __slots__ = ("_app", "_task", "id")

    def __init__(self, app: Chicory, task_id: str, task: Task[..., T] | None = None) -> None:
        self._app = app
        self._task = task
        self.id = task_id

    def __repr__(self) -> str:
        name = self._task.name if self._task is not None else "?"
        return f"<AsyncResult {name} {self.id}>"

    async def get(self, timeout: float | None = None) -> T:
        """Wait for the task to finish and return its value.

        Args:
            timeout: Seconds to wait; ``None`` waits forever.

        Raises:
            TaskFailedError: the task failed; carries the remote type, message and traceback.
            TimeoutError: no final result arrived within ``timeout``.
            ConfigurationError: the task was declared with ``ignore_result=True``.
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
        data = await backend.wait(self.id, timeout)
        if data is None:
            raise TimeoutError(f"task {self.id} did not finish within {timeout} s")
        record = decode_record(data, ResultRecord)
        if record.state is TaskState.FAILURE:
            error = record.error
            raise TaskFailedError(
                self.id,
                error.type if error else "UnknownError",
                error.message if error else "the task failed",
                error.traceback if error else None,
            )
        value: Any = record.result
        if self._task is not None:
            value = self._task.signature.load_result(value)
        return value  # type: ignore[no-any-return]

    async def info(self) -> ResultRecord | None:
        """Return the task's current record, or ``None`` while it is ``PENDING``."""
        backend = await self._app.connected_backend()
        data = await backend.get(self.id)
        return None if data is None else decode_record(data, ResultRecord)

    async def state(self) -> TaskState:
        """Return the task's current state (``PENDING`` when no record exists)."""
        record = await self.info()
        return TaskState.PENDING if record is None else record.state

    async def ready(self) -> bool:
        """Whether the task has finished (succeeded or failed)."""
        return (await self.state()).final

    async def failed(self) -> bool:
        """Whether the task has finished in failure."""
        return (await self.state()) is TaskState.FAILURE
