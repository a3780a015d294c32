"""Building workflows: signatures, chains, groups and chords, and sending them.

``task.s(*args, **kwargs)`` is a :class:`Signature`, a call to make later; ``task.si(...)``
one that ignores the previous step's result. :func:`chain` runs its parts one after the
other, each step getting the previous one's result as its first argument; :func:`group`
runs its members in parallel and collects their results, in member order, into one list;
:func:`chord` is a group followed by a callback that gets that list. They nest: a chain may
hold groups (a group followed by something is a chord), a group's member may be a chain.

Sending a flow (``await flow.apply_async()``) publishes only its first step(s); each
worker that settles a step publishes what follows (see :mod:`chicory.workflow.driver`), so
nothing waits inside a worker slot. Every id is drawn when the flow is sent; the handle
returned is the last step's :class:`~chicory.result.AsyncResult`, or a :class:`GroupResult`
when the flow ends in a group. From synchronous code, ``flow.blocking.apply_async()`` sends
it and returns the blocking twins of those handles (:mod:`chicory.workflow.blocking`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from chicory.calls import new_task_id
from chicory.errors import ArgumentValidationError, WorkflowError
from chicory.modes import ValidationMode
from chicory.result import AsyncResult
from chicory.workflow.driver import NO_INPUT, FlowDriver, launches
from chicory.workflow.links import Continuation, GroupNode, Node, StepNode
from chicory.workflow.results import GroupResult

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.task import Task
    from chicory.workflow.blocking import BlockingChain, BlockingGroup, BlockingSignature

__all__ = ["Chain", "Group", "GroupResult", "Signature", "chain", "chord", "group"]

_PLACEHOLDER = object()


class Signature:
    """One task call to make later, as a workflow step (``task.s(...)``, ``task.si(...)``).

    Args:
        task: The task to call.
        args: Positional arguments; in a flow the previous step's result comes first.
        kwargs: Keyword arguments.
        immutable: Ignore the previous step's result (``task.si``).
        queue: Publish to this queue instead of the task's default.
    """

    __slots__ = ("args", "immutable", "kwargs", "queue", "task")

    def __init__(
        self,
        task: Task[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        queue: str | None = None,
    ) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        self.queue = queue

    def __repr__(self) -> str:
        shown = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.task.name}.{'si' if self.immutable else 's'}({shown})"

    def set(self, *, queue: str | None = None) -> Signature:
        """A copy with other options (``queue``: where the step is published)."""
        return Signature(
            self.task, self.args, self.kwargs, immutable=self.immutable, queue=queue or self.queue
        )

    def __or__(self, other: Flow) -> Chain:
        return Chain(self, other)

    @property
    def app(self) -> Chicory:
        """The app of the step's task."""
        return self.task.app

    @property
    def blocking(self) -> BlockingSignature:
        """This step's blocking face, for synchronous code: ``step.blocking.apply_async()``
        blocks until it is sent (see :mod:`chicory.workflow.blocking`)."""
        from chicory.workflow.blocking import BlockingSignature

        return BlockingSignature(self)

    async def apply_async(self) -> AsyncResult[Any]:
        """Send this call alone (a flow of one step); return its result handle."""
        result = await Chain(self).apply_async()
        assert isinstance(result, AsyncResult)
        return result

    def _step(self, has_input: bool, new_id: Any) -> StepNode:
        task = self.task
        takes_input = has_input and not self.immutable
        try:
            if takes_input:
                # Check the call's shape with a stand-in for the result to come; its types
                # are checked by the worker that runs it, once the result is known.
                args, kwargs = task.signature.bind(
                    (_PLACEHOLDER, *self.args), self.kwargs, ValidationMode.NONE
                )
                args = args[1:]
            else:
                args, kwargs = task.signature.bind(self.args, self.kwargs, task.validation_mode)
        except ArgumentValidationError as exc:
            if takes_input:
                raise WorkflowError(
                    f"step {self!r} cannot take the previous step's result as its first "
                    f"argument: {exc}. Make it immutable ({task.name}.si(...)) to ignore the "
                    "result"
                ) from exc
            raise
        return StepNode(
            task=task.name,
            id=new_id(),
            args=tuple(args),
            kwargs=kwargs,
            queue=self.queue or task.queue,
            immutable=self.immutable or not has_input,
        )


class Chain:
    """Parts run one after the other, each step getting the previous result first.

    Build with :func:`chain` or ``a.s() | b.s()``.
    """

    __slots__ = ("parts",)

    def __init__(self, *parts: Flow) -> None:
        flat: list[Signature | Group] = []
        for part in parts:
            if isinstance(part, Chain):
                flat += part.parts
            elif isinstance(part, Signature | Group):
                flat.append(part)
            else:
                raise WorkflowError(
                    f"a chain holds signatures (task.s(...)), groups and chains, not "
                    f"{type(part).__name__}"
                )
        if not flat:
            raise WorkflowError("a chain needs at least one step")
        self.parts: tuple[Signature | Group, ...] = tuple(flat)

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.parts))

    def __or__(self, other: Flow) -> Chain:
        return Chain(self, other)

    @property
    def app(self) -> Chicory:
        """The app of the first step's task."""
        return self.parts[0].app

    @property
    def blocking(self) -> BlockingChain:
        """This flow's blocking face, for synchronous code: ``flow.blocking.apply_async()``
        blocks until it is sent (see :mod:`chicory.workflow.blocking`)."""
        from chicory.workflow.blocking import BlockingChain

        return BlockingChain(self)

    async def apply_async(self) -> AsyncResult[Any] | GroupResult:
        """Send the flow: publish its first step(s); return the handle of its last node.

        Raises:
            WorkflowError: a step cannot take the previous step's result.
            ArgumentValidationError: a first step's arguments do not fit its task.
            CapabilityError: a group is followed by a step and the result backend cannot
                join groups.
            BrokerError: publishing failed.
        """
        app = self.app
        nodes = _plan(self.parts, has_input=False, new_id=new_task_id)
        if _needs_join(nodes):
            from chicory.workflow.joins import joins_of

            joins_of(await app.connected_backend(), needed_for="a group followed by a step")
        head, rest = nodes[0], tuple(nodes[1:])
        await FlowDriver(app).send(launches(head, NO_INPUT, Continuation(next=rest)))
        return _handle(app, nodes[-1])


class Group:
    """Members run in parallel; their results are collected in member order.

    Build with :func:`group`.
    """

    __slots__ = ("members",)

    def __init__(self, members: Iterable[Flow]) -> None:
        self.members: tuple[Flow, ...] = tuple(members)
        if not self.members:
            raise WorkflowError("a group needs at least one member")
        for member in self.members:
            if not isinstance(member, Signature | Chain | Group):
                raise WorkflowError(
                    f"a group holds signatures (task.s(...)), chains and groups, not "
                    f"{type(member).__name__}"
                )

    def __repr__(self) -> str:
        return f"group({', '.join(map(repr, self.members))})"

    def __or__(self, other: Flow) -> Chain:
        return Chain(self, other)

    @property
    def app(self) -> Chicory:
        """The app of the first member's task."""
        return self.members[0].app

    @property
    def blocking(self) -> BlockingGroup:
        """This group's blocking face, for synchronous code: ``group.blocking.apply_async()``
        blocks until it is sent (see :mod:`chicory.workflow.blocking`)."""
        from chicory.workflow.blocking import BlockingGroup

        return BlockingGroup(self)

    async def apply_async(self) -> GroupResult:
        """Send every member; return the handle of their results, in member order.

        Raises:
            ArgumentValidationError: a member's arguments do not fit its task.
            BrokerError: publishing failed.
        """
        result = await Chain(self).apply_async()
        assert isinstance(result, GroupResult)
        return result


Flow: TypeAlias = Signature | Chain | Group
"""Anything a workflow is built of."""


def chain(*parts: Flow) -> Chain:
    """Run ``parts`` one after the other; each step gets the previous result first."""
    return Chain(*parts)


def group(*members: Flow | Iterable[Flow]) -> Group:
    """Run ``members`` in parallel: ``group(a.s(1), b.s(2))`` or ``group(gen)`` for an
    iterable of them."""
    if len(members) == 1 and not isinstance(members[0], Signature | Chain | Group):
        return Group(members[0])
    return Group(members)  # type: ignore[arg-type]


def chord(header: Group | Iterable[Flow], body: Flow) -> Chain:
    """Run the ``header`` group, then ``body`` with the list of its results."""
    return Chain(header if isinstance(header, Group) else Group(header), body)


def _plan(parts: Sequence[Flow], *, has_input: bool, new_id: Any) -> list[Node]:
    nodes: list[Node] = []
    for part in parts:
        if isinstance(part, Chain):
            nested = _plan(part.parts, has_input=has_input, new_id=new_id)
            nodes += nested
        elif isinstance(part, Signature):
            nodes.append(part._step(has_input, new_id))
        else:
            members = tuple(
                tuple(_plan([member], has_input=has_input, new_id=new_id))
                for member in part.members
            )
            nodes.append(GroupNode(id=new_id(), members=members))
        has_input = True
    return nodes


def _needs_join(nodes: Sequence[Node], followed: bool = False) -> bool:
    """Whether a group among ``nodes`` (nested ones too) is followed by anything; ``followed``:
    whether something follows ``nodes`` themselves."""
    for index, node in enumerate(nodes):
        if isinstance(node, GroupNode):
            after = followed or index < len(nodes) - 1
            if after:
                return True
            if any(_needs_join(member) for member in node.members):
                return True
    return False


def _handle(app: Chicory, node: Node) -> AsyncResult[Any] | GroupResult:
    if isinstance(node, StepNode):
        return AsyncResult(app, node.id, app.tasks.get(node.task))
    return GroupResult([_handle(app, member[-1]) for member in node.members])
