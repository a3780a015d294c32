"""The handle of a group's results: :class:`GroupResult`, what sending a flow that ends in a
group returns (:mod:`chicory.workflow.canvas`).

It holds one handle per member, in member order: an :class:`~chicory.result.AsyncResult`,
or a :class:`GroupResult` for a nested group. Waiting for all of them, counting how many
have finished (the group's progress) and rebuilding the handle from its task ids in another
process all read the result backend, as a single task's handle does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from chicory.result import AsyncResult

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["GroupResult"]


class GroupResult:
    """The results of a group's members, in member order.

    Attributes:
        results: Each member's handle (a nested group's is a :class:`GroupResult`).
    """

    __slots__ = ("results",)

    def __init__(self, results: Sequence[AsyncResult[Any] | GroupResult]) -> None:
        self.results = list(results)

    @classmethod
    def of(cls, app: Chicory, task_ids: Iterable[str]) -> GroupResult:
        """The handle of a group's members by their task ids, in member order (in another
        request than the one that sent it, say: ``GroupResult.of(app, ids)``).

        Raises:
            ValueError: ``task_ids`` is empty.
        """
        results: list[AsyncResult[Any] | GroupResult] = [AsyncResult(app, i) for i in task_ids]
        if not results:
            raise ValueError("a group result needs at least one task id")
        return cls(results)

    @property
    def ids(self) -> list[str]:
        """The task id of each member, in member order (what :meth:`of` takes back).

        Raises:
            ValueError: a member is a nested group (keep this handle to follow it).
        """
        ids = []
        for result in self.results:
            if isinstance(result, GroupResult):
                raise ValueError(
                    "a member of this group is a group itself, with no single task id: keep "
                    "the GroupResult, or read the nested one's ids"
                )
            ids.append(result.id)
        return ids

    @property
    def app(self) -> Chicory:
        """The app the members' results are read from."""
        first = self.results[0]
        return first.app if isinstance(first, GroupResult) else first._app

    def __repr__(self) -> str:
        return f"<GroupResult of {len(self.results)}>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[AsyncResult[Any] | GroupResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> AsyncResult[Any] | GroupResult:
        return self.results[index]

    async def get(self, timeout: float | None = None) -> list[Any]:
        """Wait for every member and return their values in member order.

        Args:
            timeout: Seconds to wait for each member in turn; ``None`` waits forever.

        Raises:
            TaskFailedError: a member failed (the first in member order that did).
            TimeoutError: a member did not finish in time.
        """
        return [await result.get(timeout=timeout) for result in self.results]

    async def ready(self) -> bool:
        """Whether every member has finished."""
        for result in self.results:
            if not await result.ready():
                return False
        return True

    async def completed_count(self) -> int:
        """How many members have finished (succeeded, failed or cancelled) so far: the
        group's progress, out of ``len(group_result)``. A nested group counts once every
        one of its members has finished. The members are read at once, not one by one.

        Raises:
            ResultBackendError: the result backend could not be reached.
        """
        return sum(await self._each(lambda result: result.ready()))

    async def failed(self) -> bool:
        """Whether any member has finished in failure so far (in a nested group: any of
        its members). The members are read at once, not one by one.

        Raises:
            ResultBackendError: the result backend could not be reached.
        """
        return any(await self._each(lambda result: result.failed()))

    async def _each(
        self, read: Callable[[AsyncResult[Any] | GroupResult], Awaitable[bool]]
    ) -> list[bool]:
        """``read`` every member concurrently; the answers in member order. A read that
        fails raises its own error (the first in member order), not an exception group."""
        answers = [False] * len(self.results)
        errors: dict[int, Exception] = {}

        async def one(index: int, result: AsyncResult[Any] | GroupResult) -> None:
            try:
                answers[index] = await read(result)
            except Exception as exc:
                errors[index] = exc

        async with anyio.create_task_group() as group:
            for index, result in enumerate(self.results):
                group.start_soon(one, index, result)
        if errors:
            raise errors[min(errors)]
        return answers
