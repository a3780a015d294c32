"""How an app talks to its broker and result backend: connecting, publishing, closing.

Mixed into :class:`~chicory.app.Chicory`. An app connects lazily, on the event loop of its
first call, and stays bound to that loop (:mod:`chicory.loops`): a call from another loop
connects there once the first has ended, or raises
:class:`~chicory.errors.EventLoopMismatchError` while it still runs elsewhere.

Publishing: several messages to one queue go out as one ``publish_many``; a single one
joins the other single publishes of this event-loop iteration (:mod:`chicory.producer`);
inside :meth:`AppConnections.transaction` every publish goes into the caller's database
transaction (:mod:`chicory.transactions`). The publish middleware runs only when the app
has any (:mod:`chicory.middleware`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

import anyio

from chicory.backend import ResultBackend
from chicory.broker import Broker, OutgoingMessage
from chicory.codec import Codec
from chicory.envelope import TaskMessage
from chicory.errors import EventLoopMismatchError
from chicory.loops import LoopHome, alive_elsewhere, running_loop
from chicory.middleware import OutgoingTask, prepare
from chicory.producer import Producer
from chicory.transactions import (
    current_transaction,
    enter_transaction,
    leave_transaction,
    transactional_publisher,
)

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["AppConnections"]

log = logging.getLogger("chicory")


class AppConnections:
    """Mixed into :class:`~chicory.app.Chicory`: its connections and publishing."""

    broker: Broker
    backend: ResultBackend
    codec: Codec
    publish_hooks: tuple[Callable[[OutgoingTask], None], ...]
    _home: LoopHome
    _producer: Producer
    _transactions: int
    _broker_ready: bool
    _backend_ready: bool

    # -- publishing --------------------------------------------------------------------------

    def prepare(
        self, message: OutgoingTask, extra: Mapping[str, str] | None = None
    ) -> tuple[str, OutgoingMessage]:
        """Run the publish middleware on ``message``, check its headers and encode it
        (with Chicory's own ``extra`` headers, signed with the others).

        Returns:
            The queue it goes to and the encoded message.

        Raises:
            InvalidHeaderError: a header cannot be sent (see :mod:`chicory.headers`).
            ConfigurationError: a middleware set an ``eta`` that is not an aware datetime.
            MessageTooLargeError: the encoded message is over ``max_message_bytes``.
            Exception: whatever a middleware raised to refuse the message.
        """
        return prepare(self.codec, self.publish_hooks, message, extra)

    async def publish_prepared(self, prepared: Iterable[tuple[str, OutgoingMessage]]) -> None:
        """Publish messages from :meth:`prepare`, one batch per queue."""
        batches: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for queue, outgoing in prepared:
            batches[queue].append(outgoing)
        for queue, batch in batches.items():
            await self.publish_encoded(queue, batch)

    # -- connections -----------------------------------------------------------------------

    async def connected_broker(self) -> Broker:
        """Return the broker, connecting it on first use (on the running event loop).

        Raises:
            EventLoopMismatchError: the app is connected on another event loop that still
                runs (see :mod:`chicory.loops`).
        """
        if not self._broker_ready or self._home.loop is not running_loop():
            await self._connect(broker=True)
        return self.broker

    async def connected_backend(self) -> ResultBackend:
        """Return the result backend, connecting it on first use (on the running event loop).

        Raises:
            EventLoopMismatchError: the app is connected on another event loop that still
                runs (see :mod:`chicory.loops`).
        """
        if not self._backend_ready or self._home.loop is not running_loop():
            await self._connect(broker=False)
        return self.backend

    async def _connect(self, *, broker: bool) -> None:
        home, loop = self._home, running_loop()
        if home.loop is not loop:
            await home.enter(cast("Chicory", self), loop)
            self._producer.reset()
        async with home.lock:
            if home.stale:
                home.stale = False
                await self._close_connections(quietly=True)
            if broker and not self._broker_ready:
                await self.broker.connect()
                self._broker_ready = True
            elif not broker and not self._backend_ready:
                await self.backend.connect()
                self._backend_ready = True

    async def publish(self, messages: Sequence[TaskMessage]) -> None:
        """Encode and publish messages, one batch per queue (through the publish
        middleware, if the app has any).

        Raises:
            MessageTooLargeError: a message is over ``max_message_bytes`` (nothing is sent).
        """
        if self.publish_hooks:
            prepared = [self.prepare(OutgoingTask.of(message)) for message in messages]
            await self.publish_prepared(prepared)
            return
        batches: dict[str, list[OutgoingMessage]] = defaultdict(list)
        for message in messages:
            body, headers = self.codec.encode(message)
            batches[message.queue].append(
                OutgoingMessage(body=body, headers=headers, not_before=message.eta)
            )
        for queue, batch in batches.items():
            await self.publish_encoded(queue, batch)

    async def publish_encoded(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Publish encoded messages to ``queue``.

        Several messages go out as one ``publish_many``. A single message joins the other
        single publishes of this event-loop iteration, sent together (see
        :mod:`chicory.producer`).
        """
        if self._transactions and (within := current_transaction(self)) is not None:
            if messages:
                broker = transactional_publisher(await self.connected_broker())
                await broker.publish_within(within, queue, messages)
            return
        if len(messages) == 1:
            await self._producer.publish(queue, messages[0])
        elif messages:
            await self._publish_now(queue, messages)

    def publish_one(self, queue: str, message: OutgoingMessage) -> Awaitable[None]:
        """``publish_encoded(queue, [message])`` for the hot path of ``delay()``: a message
        joining a batch of single publishes is awaited on its own future, with no
        coroutine of this app's in between.

        Raises (when awaited): what :meth:`publish_encoded` raises.
        """
        if self._transactions:
            return self.publish_encoded(queue, (message,))
        return self._producer.submit(queue, message)

    @asynccontextmanager
    async def transaction(self, connection: object) -> AsyncIterator[None]:
        """Publish every task of the block inside ``connection``'s open transaction.

        The tasks exist only if the caller's transaction commits (see
        :mod:`chicory.transactions`); this neither begins nor commits it::

            async with conn.transaction():
                await conn.execute("INSERT INTO orders ...")
                async with app.transaction(conn):
                    await send_receipt.delay(order_id)

        Args:
            connection: The caller's connection or session, of a kind the broker accepts
                (for ``postgresql://``: a psycopg ``AsyncConnection``, an asyncpg
                ``Connection``, or a SQLAlchemy ``AsyncSession`` / ``AsyncConnection`` on
                either driver).

        Raises:
            CapabilityError: the broker cannot enqueue inside a transaction (on entering).
        """
        transactional_publisher(await self.connected_broker())
        token = enter_transaction(self, connection)
        self._transactions += 1
        try:
            yield
        finally:
            self._transactions -= 1
            leave_transaction(token)

    async def _publish_now(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """One ``publish`` for one message, one ``publish_many`` for more."""
        if self._broker_ready and self._home.loop is running_loop():
            broker = self.broker
        else:
            broker = await self.connected_broker()
        if len(messages) == 1:
            only = messages[0]
            await broker.publish(queue, only.body, only.headers, not_before=only.not_before)
        else:
            await broker.publish_many(queue, messages)

    async def close(self) -> None:
        """Close the broker and the result backend. Idempotent.

        Single publishes still being collected are sent first.

        Raises:
            EventLoopMismatchError: the app is connected on an event loop that still runs
                in another thread; close it there.
        """
        home = self._home
        loop = running_loop()
        if home.loop is not None and home.loop is not loop:
            if alive_elsewhere(home.loop):
                raise EventLoopMismatchError(
                    f"{self!r} is connected on an event loop that still runs in another "
                    f"thread ({home.loop!r}); close it from that loop"
                )
            await self._close_connections(quietly=True)  # its loop ended
        else:
            with anyio.CancelScope(shield=True):
                await self._producer.drain()
            await self._close_connections(quietly=False)
        home.left(cast("Chicory", self))

    async def _close_connections(self, *, quietly: bool) -> None:
        """Close broker and backend; ``quietly``: their loop ended, so errors are expected."""
        self._broker_ready = self._backend_ready = False
        with anyio.CancelScope(shield=True):
            if not quietly:
                await self.broker.close()
                await self.backend.close()
                return
            for resource in (self.broker, self.backend):
                try:
                    with anyio.move_on_after(5):
                        await resource.close()
                except Exception as exc:
                    log.debug("closing %r, left by an event loop that ended: %r", resource, exc)

    async def __aenter__(self) -> Self:
        await self.connected_broker()
        await self.connected_backend()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
