"""Unique enqueue: at most one message per key, the ``unique_enqueue`` broker capability.

``task.apply_async(..., task_id="nightly:2026-12-06", unique=True)`` (or ``unique_key=...``)
enqueues the run only if no earlier run holds the same key in that queue: two hosts firing
the same nightly job, or a button clicked twice, enqueue it once. The caller learns which
happened from the :class:`~chicory.result.AsyncResult` it gets back: ``duplicate`` is true
and ``id`` is the task id of the run that holds the key (await it like any result).

A key is held, on the broker, from the enqueue until the run reaches a final state
(succeeded, failed for good, cancelled) — through delays, retries and redeliveries — and for
at least ``unique_for`` seconds after the enqueue when that is given. The worker frees it
(:meth:`UniqueEnqueue.release_unique`) once the final result is stored and the delivery
settled. A key whose run never gets there (an at-most-once run lost in a crash, a purged
queue) is freed by the broker after its *hold*: the task's ``result_ttl`` after the run was
due, or ``unique_for`` if that is longer.

A broker offers this by declaring ``Capabilities(unique_enqueue=True)`` and implementing
:class:`UniqueEnqueue`; each operation is one atomic step (the check, the claim and the
publish together), so concurrent callers on many machines enqueue a key once. The
conformance suite's ``UniqueSuite`` holds a broker to it. On other brokers a unique enqueue
raises :class:`~chicory.errors.CapabilityError` (:func:`unique_enqueue`): it never enqueues
without the check.

Keys belong to a queue: the same key in two queues is two keys.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, runtime_checkable

import attrs

from chicory.broker import Broker, OutgoingMessage
from chicory.calls import outcome_unknown
from chicory.errors import CapabilityError, ConfigurationError, PublishOutcomeUnknownError
from chicory.middleware import OutgoingTask
from chicory.result import AsyncResult, DuplicateResult
from chicory.transactions import current_transaction, transactional_unique_publisher

if TYPE_CHECKING:
    from chicory.task import Task

R = TypeVar("R")

__all__ = [
    "UNIQUE_HEADER",
    "UniqueClaim",
    "UniqueEnqueue",
    "check_claim",
    "check_key",
    "enqueue_unique",
    "seconds_of",
    "unique_enqueue",
]

UNIQUE_HEADER: Final = "chicory-unique"
"""Header carrying a unique run's key, so the worker can free it when the run is final."""


@attrs.frozen(kw_only=True)
class UniqueClaim:
    """What :meth:`UniqueEnqueue.publish_unique` did.

    Attributes:
        message_id: The id of the message published, or ``None`` when the key was held
            already and nothing was published.
        holder: Who holds the key now: the ``holder`` given when the message was published,
            else the holder of the earlier claim.
    """

    message_id: str | None
    holder: str

    @property
    def published(self) -> bool:
        """Whether the message was published (the key was free)."""
        return self.message_id is not None


@runtime_checkable
class UniqueEnqueue(Protocol):
    """The operations of the ``unique_enqueue`` capability (see the module docstring).

    Every method may raise :class:`~chicory.errors.BrokerConnectionError` when the broker
    cannot be reached and may be cancelled (a cancelled call took effect whole or not at
    all). Times are judged on the broker's clock.
    """

    async def publish_unique(
        self,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """Publish ``message`` to ``queue`` unless ``key`` is held there, in one atomic step.

        When the key is free: claim it for ``holder`` (for ``hold`` seconds at most) and
        publish the message (delayed if its ``not_before`` is in the future). When it is
        held: publish nothing.

        Args:
            queue: The queue (keys of different queues are independent).
            message: The message to publish.
            key: The dedup key.
            holder: Who claims it (core passes the task id).
            hold: Seconds after which the claim ends on its own (> 0).
            keep: Seconds the claim lasts at least, even when released sooner
                (``0 <= keep <= hold``).

        Raises:
            ValueError: ``hold`` or ``keep`` is out of range, or ``not_before`` is naive.
            MessageTooLargeError: the body exceeds ``max_body_bytes`` (nothing is claimed).
            PublishOutcomeUnknownError: the connection failed after the call was sent.
        """
        ...

    async def release_unique(self, queue: str, key: str, holder: str) -> bool:
        """End ``holder``'s claim on ``key`` (at once, or when its ``keep`` time ends).

        Returns:
            True if ``holder`` held the key; False, doing nothing, otherwise (the claim
            ended already, or someone else holds the key).
        """
        ...

    async def unique_holder(self, queue: str, key: str) -> str | None:
        """Return who holds ``key`` in ``queue`` now, or ``None`` if it is free."""
        ...


def unique_enqueue(broker: Broker, *, needed_for: str) -> UniqueEnqueue:
    """Return ``broker`` as a :class:`UniqueEnqueue`, or say why it is not one.

    Raises:
        CapabilityError: the broker does not declare ``Capabilities(unique_enqueue=True)``.
    """
    if not getattr(broker.capabilities, "unique_enqueue", False) or not isinstance(
        broker, UniqueEnqueue
    ):
        raise CapabilityError(
            f"{needed_for} needs a broker with the 'unique_enqueue' capability, and "
            f"{broker!r} does not declare it (Capabilities.unique_enqueue=False); use the "
            "memory://, redis://, postgresql:// or sqlite:// broker, or enqueue without "
            "unique=/unique_key="
        )
    return broker


def check_key(key: object) -> None:
    """Check a unique key a caller chose (``unique_key=``).

    Raises:
        ConfigurationError: it is not a string of 1 to 255 printable characters.
    """
    if type(key) is not str or not 0 < len(key) <= 255 or not key.isprintable():
        raise ConfigurationError(
            f"a unique key must be a string of 1 to 255 printable characters, got {key!r:.100}"
        )


def seconds_of(value: float | timedelta | None, what: str) -> float | None:
    """``value`` in seconds (``None`` stays ``None``).

    Raises:
        ConfigurationError: ``value`` is negative.
    """
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigurationError(f"{what} must not be negative, got {value!r}")
    return seconds


def check_claim(hold: float, keep: float) -> None:
    """Raise ``ValueError`` unless ``0 < hold`` and ``0 <= keep <= hold`` (for brokers)."""
    if not hold > 0:
        raise ValueError(f"hold must be positive, got {hold}")
    if not 0 <= keep <= hold:
        raise ValueError(f"keep must be between 0 and hold={hold}, got {keep}")


async def enqueue_unique(
    task: Task[..., R],
    message: OutgoingTask,
    key: str,
    keep: float | timedelta | None,
    limits: dict[str, str] | None,
) -> AsyncResult[R]:
    """Publish ``message`` of ``task`` unless ``key`` is held in its queue (what
    ``apply_async(..., unique=True)`` does; see the module docstring).

    Inside ``app.transaction(conn)`` the key is claimed by that transaction (a rollback frees
    it), where the broker can (:class:`~chicory.transactions.TransactionalUniquePublisher`).

    Raises:
        CapabilityError: the app's broker lacks the ``unique_enqueue`` capability, or it is
            inside ``app.transaction(...)`` and the broker cannot claim a key there.
        ConfigurationError: ``keep`` is negative.
        PublishOutcomeUnknownError: the connection failed after the call was sent (sending
            again is safe: the key dedups it).
    """
    app = task.app
    keep_seconds = seconds_of(keep, "unique_for") or 0.0
    queue, outgoing = app.prepare(message, {UNIQUE_HEADER: key, **(limits or {})})
    due = outgoing.not_before
    wait = max(0.0, (due - message.created_at).total_seconds()) if due is not None else 0.0
    hold = max(keep_seconds, wait + task.result_ttl)
    broker = unique_enqueue(
        await app.connected_broker(), needed_for=f"a unique enqueue of task {task.name!r}"
    )
    within = current_transaction(app)
    try:
        if within is not None:  # claimed by the caller's transaction (see chicory.transactions)
            claim = await transactional_unique_publisher(
                broker, task_name=task.name
            ).publish_unique_within(
                within, queue, outgoing, key=key, holder=message.id, hold=hold, keep=keep_seconds
            )
        else:
            claim = await broker.publish_unique(
                queue, outgoing, key=key, holder=message.id, hold=hold, keep=keep_seconds
            )
    except PublishOutcomeUnknownError as exc:
        raise outcome_unknown(exc, task.name, [message.id]) from exc
    if claim.published:
        return AsyncResult(app, claim.holder, task)
    return DuplicateResult(app, claim.holder, task)
