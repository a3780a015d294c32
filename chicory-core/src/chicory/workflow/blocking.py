"""The blocking face of workflows: send a chain, group or chord from synchronous code.

Every flow has a blocking face under ``.blocking``, as every task does
(:mod:`chicory.blocking`)::

    handle = (fetch.s(1) | count.s()).blocking.apply_async()  # returns once it is sent
    handle.get(timeout=10)  # a BlockingResult: blocks until the value is there

    pages = group(fetch.s(p) for p in range(3)).blocking.apply_async()
    pages.completed_count()  # a BlockingGroupResult: how many members have finished
    pages.get(timeout=10)  # their values, in member order

Which call blocks is in the name: ``flow.blocking.apply_async()`` blocks and returns blocking
handles (:class:`~chicory.blocking.BlockingResult`, :class:`BlockingGroupResult`);
``await flow.apply_async()`` is the async face. Each blocking call is one call of the async
API on the app's loop or the process's portal (:func:`chicory.blocking.call`), so flows
sent from many threads share one set of connections, a forked child makes its own, and a
call from inside a running event loop raises
:class:`~chicory.errors.BlockingCallError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from chicory.blocking import BlockingResult, call
from chicory.result import AsyncResult
from chicory.workflow.results import GroupResult

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.workflow.canvas import Chain, Group, Signature

__all__ = ["BlockingChain", "BlockingGroup", "BlockingGroupResult", "BlockingSignature"]


class BlockingGroupResult:
    """The blocking face of a :class:`~chicory.workflow.results.GroupResult`: every method blocks.

    Args:
        result: The async handle it wraps.
    """

    __slots__ = ("async_result",)

    def __init__(self, result: GroupResult) -> None:
        self.async_result = result

    @classmethod
    def of(cls, app: Chicory, task_ids: Iterable[str]) -> BlockingGroupResult:
        """The handle of a group's members by their task ids, in member order (in another
        request than the one that sent it, say).

        Raises:
            ValueError: ``task_ids`` is empty.
        """
        return cls(GroupResult.of(app, task_ids))

    def __repr__(self) -> str:
        return f"<BlockingGroupResult of {len(self.async_result)}>"

    @property
    def results(self) -> list[BlockingResult[Any] | BlockingGroupResult]:
        """Each member's blocking handle, in member order (a nested group's is a
        :class:`BlockingGroupResult`)."""
        return [_blocking(result) for result in self.async_result.results]

    @property
    def ids(self) -> list[str]:
        """The task id of each member, in member order (what :meth:`of` takes back).

        Raises:
            ValueError: a member is a nested group.
        """
        return self.async_result.ids

    def __len__(self) -> int:
        return len(self.async_result)

    def __iter__(self) -> Iterator[BlockingResult[Any] | BlockingGroupResult]:
        return iter(self.results)

    def __getitem__(self, index: int) -> BlockingResult[Any] | BlockingGroupResult:
        return _blocking(self.async_result[index])

    def get(self, timeout: float | None = None) -> list[Any]:
        """Block until every member has finished; return their values in member order.

        Args:
            timeout: Seconds to wait for each member in turn; ``None`` waits forever.

        Raises:
            TaskFailedError: a member failed (the first in member order that did).
            TimeoutError: a member did not finish in time.
        """
        return call(self.async_result.app, self.async_result.get, timeout)

    def ready(self) -> bool:
        """Whether every member has finished."""
        return call(self.async_result.app, self.async_result.ready)

    def completed_count(self) -> int:
        """How many members have finished so far (the group's progress, out of ``len()``);
        see :meth:`GroupResult.completed_count
        <chicory.workflow.GroupResult.completed_count>`."""
        return call(self.async_result.app, self.async_result.completed_count)

    def failed(self) -> bool:
        """Whether any member has finished in failure so far."""
        return call(self.async_result.app, self.async_result.failed)


class BlockingSignature:
    """The blocking face of one workflow step (``task.s(...).blocking``).

    Args:
        flow: The step.
    """

    __slots__ = ("flow",)

    def __init__(self, flow: Signature) -> None:
        self.flow = flow

    def __repr__(self) -> str:
        return f"<BlockingSignature {self.flow!r}>"

    def apply_async(self) -> BlockingResult[Any]:
        """Send this call alone; block until it is sent and return its blocking handle.

        Raises:
            ArgumentValidationError: the arguments do not fit the task.
            BrokerError: publishing failed.
            BlockingCallError: called from inside a running event loop.
        """
        return BlockingResult(call(self.flow.app, self.flow.apply_async))


class BlockingChain:
    """The blocking face of a chain or chord (``(a.s() | b.s()).blocking``).

    Args:
        flow: The flow.
    """

    __slots__ = ("flow",)

    def __init__(self, flow: Chain) -> None:
        self.flow = flow

    def __repr__(self) -> str:
        return f"<BlockingChain {self.flow!r}>"

    def apply_async(self) -> BlockingResult[Any] | BlockingGroupResult:
        """Send the flow; block until its first step(s) are published and return the
        blocking handle of its last node (a :class:`BlockingGroupResult` when it ends in a
        group).

        Raises:
            WorkflowError: a step cannot take the previous step's result.
            ArgumentValidationError: a first step's arguments do not fit its task.
            CapabilityError: a group is followed by a step and the result backend cannot
                join groups.
            BrokerError: publishing failed.
            BlockingCallError: called from inside a running event loop.
        """
        return _blocking(call(self.flow.app, self.flow.apply_async))


class BlockingGroup:
    """The blocking face of a group (``group(...).blocking``).

    Args:
        flow: The group.
    """

    __slots__ = ("flow",)

    def __init__(self, flow: Group) -> None:
        self.flow = flow

    def __repr__(self) -> str:
        return f"<BlockingGroup {self.flow!r}>"

    def apply_async(self) -> BlockingGroupResult:
        """Send every member; block until they are published and return the blocking
        handle of their results, in member order.

        Raises:
            ArgumentValidationError: a member's arguments do not fit its task.
            BrokerError: publishing failed.
            BlockingCallError: called from inside a running event loop.
        """
        return BlockingGroupResult(call(self.flow.app, self.flow.apply_async))


def _blocking(result: AsyncResult[Any] | GroupResult) -> BlockingResult[Any] | BlockingGroupResult:
    if isinstance(result, GroupResult):
        return BlockingGroupResult(result)
    return BlockingResult(result)
