"""Moving a flow on: publishing the steps that follow a step, joining groups, marking what a
failure leaves unrun. The same code starts a flow (in the caller) and continues it (in the
worker that settles each step).

What follows a step that succeeded with ``value`` (:meth:`FlowDriver.advance`):

* the next node: a step is published with ``value`` as its first argument (unless it is
  immutable); a group publishes the first step of every member, each with ``value``;
* nothing next but a join: the member's outcome is joined (:mod:`chicory.workflow.joins`);
  the call that completes the group continues with what follows the group, passing the
  members' results as one list in member order;
* nothing at all: the flow is done (its last step's record is the flow's result).

What follows a step that failed for good (:meth:`FlowDriver.fail`): every step still to
run in its continuation gets a ``FAILURE`` record (type ``chicory.errors.WorkflowError``,
naming the step that failed) without being published; a join records the member as failed.
A group whose members all finished with some failed does not run what follows it: those
steps get a ``FAILURE`` record naming every failed member.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from chicory.backend import StoredResult
from chicory.inspection import RecordForgetting
from chicory.middleware import OutgoingTask
from chicory.records import ErrorInfo, ResultRecord, TaskState, decode_record, encode_record
from chicory.unique import UNIQUE_HEADER, UniqueEnqueue
from chicory.workflow.joins import joins_of
from chicory.workflow.links import (
    AGAIN_HEADER,
    FLOW_HEADER,
    Continuation,
    Join,
    Node,
    StepNode,
    encode_continuation,
    step_nodes,
)

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.broker import OutgoingMessage

__all__ = ["NO_INPUT", "FlowDriver", "Launch", "launches", "step_key"]

NO_INPUT: Final[Any] = object()
"""The input of a flow's first steps: they get no previous result."""

WORKFLOW_ERROR: Final = "chicory.errors.WorkflowError"


@attrs.frozen
class Launch:
    """One step to publish: the node, its input (``NO_INPUT``: none) and what follows it."""

    step: StepNode
    input: Any
    then: Continuation


def launches(node: Node, value: Any, then: Continuation) -> list[Launch]:
    """The steps to publish to start ``node`` with input ``value``, followed by ``then``."""
    if isinstance(node, StepNode):
        return [Launch(node, value, then)]
    out: list[Launch] = []
    size = len(node.members)
    for index, member in enumerate(node.members):
        join = Join(group=node.id, index=index, size=size, then=then) if then else None
        out += launches(member[0], value, Continuation(next=member[1:], join=join))
    return out


def step_key(task_id: str) -> str:
    """The unique-enqueue key of a workflow step (:mod:`chicory.unique`)."""
    return f"chicory-step:{task_id}"


def _entry_ok(value: Any) -> bytes:
    return orjson.dumps({"ok": value})


def _entry_failed(culprit: str) -> bytes:
    return orjson.dumps({"failed": culprit})


class FlowDriver:
    """Publishes and joins the steps of flows for ``app`` (see the module docstring)."""

    def __init__(self, app: Chicory) -> None:
        self._app = app

    def prepare(
        self, launch: Launch, *, again: bool = False, unique: bool = False
    ) -> tuple[str, OutgoingMessage]:
        """Encode one step's message, through the app's publish middleware.

        Raises:
            InvalidHeaderError: a middleware set a header that cannot be sent.
            MessageTooLargeError: the message is over the app's size limit.
        """
        app = self._app
        step = launch.step
        args = list(step.args)
        if launch.input is not NO_INPUT and not step.immutable:
            args.insert(0, launch.input)
        message = OutgoingTask(
            task=step.task,
            id=step.id,
            args=args,
            kwargs=dict(step.kwargs),
            queue=step.queue,
            created_at=app.utcnow(),
        )
        extra: dict[str, str] = {}
        if launch.then:
            extra[FLOW_HEADER] = encode_continuation(launch.then)
        if again:
            extra[AGAIN_HEADER] = "1"
        if unique:
            extra[UNIQUE_HEADER] = step_key(step.id)
        return app.prepare(message, extra)

    async def send(self, steps: Sequence[Launch], *, again: bool = False) -> None:
        """Publish ``steps``: each under a unique key (its task id) on a broker with the
        ``unique_enqueue`` capability, so a step published again while an earlier copy is
        queued or running is not enqueued twice; else one batch per queue."""
        app = self._app
        broker = await app.connected_broker()
        if not (broker.capabilities.unique_enqueue and isinstance(broker, UniqueEnqueue)):
            await app.publish_prepared([self.prepare(s, again=again) for s in steps])
            return
        for launch in steps:
            queue, outgoing = self.prepare(launch, again=again, unique=True)
            step = launch.step
            task = app.tasks.get(step.task)
            hold = task.result_ttl if task is not None else app.result_ttl
            await broker.publish_unique(
                queue, outgoing, key=step_key(step.id), holder=step.id, hold=hold
            )

    async def advance(
        self, then: Continuation, value: Any, *, again: bool = False, reopen: bool = False
    ) -> None:
        """Continue a flow after a step that returned ``value`` (JSON).

        ``again``: the step was redelivered after its result was stored, so what follows may
        have been published already; it is published marked so its worker checks first.
        ``reopen``: the step is a replayed dead letter, so what follows may carry the records
        its failure wrote; they are deleted first (:meth:`reopen`), so the new runs' results
        are stored (a final record is written once).

        Raises:
            BrokerError: publishing failed (calling again is safe: the ids are fixed).
            ResultBackendError: the join could not be recorded.
        """
        if reopen:
            await self.reopen(then)
        while True:
            if then.next:
                head, rest = then.next[0], then.next[1:]
                await self.send(
                    launches(head, value, Continuation(next=rest, join=then.join)), again=again
                )
                return
            join = then.join
            if join is None:
                return
            entries = await self._join(join, _entry_ok(value))
            if entries is None:
                return
            values, failed = _outcomes(entries)
            if failed:
                await self.fail(join.then, _group_failed(join, failed))
                return
            then, value = join.then, values

    async def fail(self, then: Continuation, culprit: str) -> None:
        """Mark what follows a failed step, and join its member as failed.

        Args:
            then: The failed step's continuation.
            culprit: What failed, for the records (``"step tasks.b 1a2b... failed
                (ValueError: boom)"``).

        Raises:
            ResultBackendError: a record or the join could not be written.
        """
        while True:
            await self._mark(then.next, culprit)
            join = then.join
            if join is None:
                return
            entries = await self._join(join, _entry_failed(culprit))
            if entries is None:
                return
            _, failed = _outcomes(entries)
            then, culprit = join.then, _group_failed(join, failed)

    async def reopen(self, then: Continuation) -> None:
        """Delete the records a failure wrote for the steps of ``then`` (and of what follows
        its joins), where the result backend can delete records; other records stay."""
        backend = await self._app.connected_backend()
        if not isinstance(backend, RecordForgetting):
            return
        steps: list[StepNode] = []
        current: Continuation | None = then
        while current is not None:
            steps += step_nodes(current.next)
            current = current.join.then if current.join is not None else None
        for step in steps:
            data = await backend.get(step.id)
            if data is None:
                continue
            record = decode_record(data, ResultRecord)
            error = record.error
            if record.attempt == 0 and error is not None and error.type == WORKFLOW_ERROR:
                await backend.forget(step.id)

    async def _join(self, join: Join, data: bytes) -> list[bytes] | None:
        backend = await self._app.connected_backend()
        joins = joins_of(backend, needed_for="a group followed by another step")
        return await joins.join(join.group, join.index, join.size, data, ttl=self._app.result_ttl)

    async def _mark(self, nodes: Sequence[Node], culprit: str) -> None:
        steps = list(step_nodes(nodes))
        if not steps:
            return
        app = self._app
        now = app.utcnow()
        error = ErrorInfo(type=WORKFLOW_ERROR, message=f"not run: {culprit}")
        records = [
            StoredResult(
                task_id=step.id,
                data=encode_record(
                    ResultRecord(
                        task_id=step.id,
                        task=step.task,
                        state=TaskState.FAILURE,
                        attempt=0,
                        updated_at=now,
                        error=error,
                    )
                ),
                final=True,
            )
            for step in steps
        ]
        backend = await app.connected_backend()
        await backend.store_many(records, ttl=app.result_ttl)


def _outcomes(entries: list[bytes]) -> tuple[list[Any], list[str]]:
    """The members' results in order, and the descriptions of those that failed."""
    values: list[Any] = []
    failed: list[str] = []
    for entry in entries:
        raw = orjson.loads(entry)
        if "failed" in raw:
            failed.append(str(raw["failed"]))
            values.append(None)
        else:
            values.append(raw.get("ok"))
    return values, failed


def _group_failed(join: Join, failed: list[str]) -> str:
    shown = "; ".join(failed[:10])
    more = f"; and {len(failed) - 10} more" if len(failed) > 10 else ""
    return f"{len(failed)} of {join.size} members of group {join.group} failed: {shown}{more}"


def step_culprit(task: str, task_id: str, error: ErrorInfo) -> str:
    """How a failed step is named in the records of the steps it leaves unrun."""
    return f"step {task} {task_id} failed ({error.type}: {error.message})"
