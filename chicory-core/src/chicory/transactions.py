"""Enqueue inside the caller's database transaction: the ``transactional_enqueue`` capability.

A task that concerns a row (send the order's receipt, index the document) should exist if
and only if the transaction writing that row commits. With a broker that keeps its queue in
the application's database, the enqueue can be one more statement of that transaction::

    async with conn.transaction():                       # the application's own transaction
        await conn.execute("INSERT INTO orders ...")
        async with app.transaction(conn):
            await send_receipt.delay(order_id)           # rolled back with the order

:meth:`Chicory.transaction <chicory.app.Chicory.transaction>` neither begins nor commits
anything: every task published inside the block (``delay``, ``apply_async``, ``delay_many``,
through the publish middleware as always) is written on ``conn`` by the broker's
:meth:`TransactionalPublisher.publish_within`, and becomes visible to workers when the
caller commits (and never, if it rolls back). Publishes are not batched across callers
there: each goes out on the caller's connection when it is made.

A broker offers this by declaring ``Capabilities(transactional_enqueue=True)`` and
implementing :class:`TransactionalPublisher`; which connection objects it accepts is its own
business (``chicory-postgres`` takes psycopg and asyncpg connections and SQLAlchemy async
sessions). On
any other broker, entering ``app.transaction(...)`` raises
:class:`~chicory.errors.CapabilityError`: a task is never published outside a transaction
the caller asked it to join.

A unique enqueue (``unique=True``) joins the transaction too when the broker also declares
``unique_enqueue`` and implements :class:`TransactionalUniquePublisher`: the key is claimed
by the caller's transaction, so a rollback frees it with the message. On a broker without
that method a unique enqueue inside ``app.transaction(...)`` raises ``CapabilityError``.
The conformance suite's ``TransactionalEnqueueSuite`` checks both operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from chicory.broker import Broker, OutgoingMessage
from chicory.errors import CapabilityError

if TYPE_CHECKING:
    from chicory.unique import UniqueClaim

__all__ = [
    "TransactionalPublisher",
    "TransactionalUniquePublisher",
    "current_transaction",
    "enter_transaction",
    "leave_transaction",
    "transactional_publisher",
    "transactional_unique_publisher",
]


@runtime_checkable
class TransactionalPublisher(Protocol):
    """The operation of the ``transactional_enqueue`` capability (see the module docstring)."""

    async def publish_within(
        self, connection: object, queue: str, messages: Sequence[OutgoingMessage]
    ) -> list[str]:
        """Write ``messages`` to ``queue`` on ``connection``, inside its open transaction.

        They are delivered only once that transaction commits, and never if it rolls back.
        Returns their message ids, in order.

        Raises:
            CapabilityError: ``connection`` is not a connection this broker can write on.
            ValueError: a ``not_before`` is naive (nothing is written).
            MessageTooLargeError: a body is over ``max_body_bytes`` (nothing is written).
            Exception: whatever the connection's driver raises (the caller's transaction
                is then usually aborted, as with any failed statement in it).
        """
        ...


@runtime_checkable
class TransactionalUniquePublisher(Protocol):
    """A unique enqueue inside the caller's transaction (brokers declaring both
    ``transactional_enqueue`` and ``unique_enqueue``)."""

    async def publish_unique_within(
        self,
        connection: object,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """:meth:`~chicory.unique.UniqueEnqueue.publish_unique`, on ``connection``.

        The claim of ``key`` and the message are written inside the connection's open
        transaction: both exist once it commits, and neither if it rolls back (the key is
        then free again). Until then, a concurrent claim of the same key waits for the
        outcome or sees the key held, as the broker's database decides; it never claims it
        twice.

        Raises:
            CapabilityError: ``connection`` is not a connection this broker can write on.
            ValueError: ``hold``/``keep`` are out of range or ``not_before`` is naive.
            MessageTooLargeError: the body is over ``max_body_bytes``.
            Exception: whatever the connection's driver raises.
        """
        ...


_CURRENT: ContextVar[tuple[object, object] | None] = ContextVar("chicory_transaction", default=None)
"""``(app, connection)`` of the innermost ``app.transaction(...)`` block of this context."""


def current_transaction(app: object) -> object | None:
    """The connection that ``app``'s publishes join in this context, or ``None``."""
    current = _CURRENT.get()
    if current is not None and current[0] is app:
        return current[1]
    return None


def enter_transaction(app: object, connection: object) -> Token[tuple[object, object] | None]:
    """Make ``app``'s publishes in this context join ``connection`` (undo with the token)."""
    return _CURRENT.set((app, connection))


def leave_transaction(token: Token[tuple[object, object] | None]) -> None:
    """Undo :func:`enter_transaction`."""
    _CURRENT.reset(token)


def transactional_publisher(broker: Broker) -> TransactionalPublisher:
    """Return ``broker`` as a :class:`TransactionalPublisher`, or say why it is not one.

    Raises:
        CapabilityError: the broker does not declare ``transactional_enqueue``.
    """
    if not getattr(broker.capabilities, "transactional_enqueue", False) or not isinstance(
        broker, TransactionalPublisher
    ):
        raise CapabilityError(
            f"enqueueing inside a database transaction needs a broker with the "
            f"'transactional_enqueue' capability, and {broker!r} does not declare it "
            "(Capabilities.transactional_enqueue=False): its queue is not in your database. "
            "Use the postgresql:// broker, or publish after your transaction commits"
        )
    return broker


def transactional_unique_publisher(
    broker: object, *, task_name: str
) -> TransactionalUniquePublisher:
    """Return ``broker`` as a :class:`TransactionalUniquePublisher`, or say why it is not one.

    Raises:
        CapabilityError: the broker cannot claim a unique key inside a transaction.
    """
    if not isinstance(broker, TransactionalUniquePublisher):
        raise CapabilityError(
            f"a unique enqueue of task {task_name!r} cannot join a database transaction "
            f"(app.transaction) on {broker!r}: it cannot claim the key inside the transaction "
            "(no publish_unique_within), so the key would be taken whether the transaction "
            "commits or not; enqueue it after the commit, or without unique=/unique_key="
        )
    return broker
