"""What a workflow step carries to its worker: the rest of its flow, in one header.

A step's message has the ``chicory-flow`` header when something follows it: its
:class:`Continuation`, the steps still to run after it (``next``) and, when the step ends
one member of a group whose results something awaits, the :class:`Join` recording its
result for that group. Every step, group and join id in it was drawn when the flow was
sent, so the worker that settles a step publishes the next one under a fixed id: sending it
again (a redelivered step re-triggers its successor) reuses the id.

The header is JSON of short keys::

    {"next": [node, ...], "join": {"group": id, "index": i, "size": n, "then": {...}} | null}
    node = {"step": {"task": name, "id": task id, "args": [...], "kwargs": {...},
                     "queue": q, "immutable": bool}}
         | {"group": {"id": group id, "members": [[node, ...], ...]}}

With a signing key the header is signed with the body (see :mod:`chicory.envelope`): it
decides what the worker publishes next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs
import orjson

from chicory.errors import MessageDecodeError
from chicory.headers import FLOW_HEADER

__all__ = [
    "AGAIN_HEADER",
    "FLOW_HEADER",
    "Continuation",
    "GroupNode",
    "Join",
    "Node",
    "StepNode",
    "decode_continuation",
    "encode_continuation",
    "step_nodes",
]


AGAIN_HEADER: Final = "chicory-again"
"""Set on a step published again by a redelivered predecessor: its worker first checks
whether the step succeeded already (and then only passes its result on)."""


@attrs.frozen(kw_only=True)
class StepNode:
    """One task call of a flow, with its id fixed.

    Attributes:
        task: The task's registered name.
        id: Its task id.
        args: Positional arguments (JSON values); the previous step's result goes first
            unless ``immutable``.
        kwargs: Keyword arguments (JSON values).
        queue: The queue it is published to.
        immutable: Whether it ignores the previous step's result.
    """

    task: str
    id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    queue: str
    immutable: bool = False


@attrs.frozen(kw_only=True)
class GroupNode:
    """Members run in parallel; each member is a chain of nodes.

    Attributes:
        id: The group id (the key of its join record).
        members: Each member's nodes, in order.
    """

    id: str
    members: tuple[tuple[Node, ...], ...]


Node = StepNode | GroupNode


@attrs.frozen(kw_only=True)
class Join:
    """Where the step that ends a group member records its outcome.

    Attributes:
        group: The group's id.
        index: The member's position in the group.
        size: How many members the group has.
        then: What follows the group once every member has finished.
    """

    group: str
    index: int
    size: int
    then: Continuation


@attrs.frozen(kw_only=True)
class Continuation:
    """What follows a step.

    Attributes:
        next: The nodes still to run, in order (the first gets the step's result).
        join: The join the step's flow ends in, if any (after ``next``).
    """

    next: tuple[Node, ...] = ()
    join: Join | None = None

    def __bool__(self) -> bool:
        return bool(self.next) or self.join is not None


def step_nodes(nodes: Sequence[Node]) -> Iterator[StepNode]:
    """Every step of ``nodes``, depth first (group members in order)."""
    for node in nodes:
        if isinstance(node, StepNode):
            yield node
        else:
            for member in node.members:
                yield from step_nodes(member)


def _node_json(node: Node) -> dict[str, Any]:
    if isinstance(node, StepNode):
        step: dict[str, Any] = {
            "task": node.task,
            "id": node.id,
            "args": list(node.args),
            "kwargs": node.kwargs,
            "queue": node.queue,
        }
        if node.immutable:
            step["immutable"] = True
        return {"step": step}
    return {
        "group": {
            "id": node.id,
            "members": [[_node_json(n) for n in member] for member in node.members],
        }
    }


def _continuation_json(continuation: Continuation) -> dict[str, Any]:
    join = continuation.join
    return {
        "next": [_node_json(node) for node in continuation.next],
        "join": None
        if join is None
        else {
            "group": join.group,
            "index": join.index,
            "size": join.size,
            "then": _continuation_json(join.then),
        },
    }


def encode_continuation(continuation: Continuation) -> str:
    """The ``chicory-flow`` header value of ``continuation``."""
    return orjson.dumps(_continuation_json(continuation)).decode()


def _field(raw: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{name!r} is {value!r}")
    return value


def _node(raw: Any) -> Node:
    if not isinstance(raw, dict):
        raise ValueError(f"a node is {type(raw).__name__}, not an object")
    if isinstance(step := raw.get("step"), dict):
        return StepNode(
            task=_field(step, "task", str),
            id=_field(step, "id", str),
            args=tuple(_field(step, "args", list)),
            kwargs=_field(step, "kwargs", dict),
            queue=_field(step, "queue", str),
            immutable=step.get("immutable") is True,
        )
    if isinstance(group := raw.get("group"), dict):
        members = _field(group, "members", list)
        if not members or not all(isinstance(m, list) and m for m in members):
            raise ValueError("a group needs members, each a non-empty list of nodes")
        return GroupNode(
            id=_field(group, "id", str),
            members=tuple(tuple(_node(n) for n in member) for member in members),
        )
    raise ValueError(f"a node has neither 'step' nor 'group': {sorted(raw)}")


def _continuation(raw: Any) -> Continuation:
    if not isinstance(raw, dict):
        raise ValueError(f"a continuation is {type(raw).__name__}, not an object")
    join = raw.get("join")
    return Continuation(
        next=tuple(_node(n) for n in _field(raw, "next", list)),
        join=None
        if join is None
        else Join(
            group=_field(join, "group", str),
            index=_field(join, "index", int),
            size=_field(join, "size", int),
            then=_continuation(join.get("then")),
        ),
    )


def decode_continuation(text: str) -> Continuation:
    """Parse a ``chicory-flow`` header value.

    Raises:
        MessageDecodeError: it is not a continuation this version writes.
    """
    try:
        return _continuation(orjson.loads(text))
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise MessageDecodeError(f"malformed {FLOW_HEADER} header: {exc}") from exc
