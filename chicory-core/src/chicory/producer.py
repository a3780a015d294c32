"""Single publishes of concurrent callers, sent together: one round trip per queue per tick.

A web server handling one task per request calls ``delay()`` from many coroutines at once.
Each call publishing on its own costs a broker round trip apiece (and, on Redis, a pooled
connection apiece); :meth:`Task.delay_many <chicory.task.Task.delay_many>` shows what a
batch costs instead. :class:`Producer` gives single calls that batch without a timer:

* The first call of an event-loop iteration opens a batch and yields once
  (``asyncio.sleep(0)``): every callback that was ready in this iteration runs before it
  resumes, so every ``delay()`` made meanwhile joins the batch. No timer is involved.
* Alone, that first call then publishes its message itself, as it would without batching
  (one ``publish``): a lone call pays one loop iteration.
* With company, it hands the batch to a sending task, which publishes one ``publish_many``
  per queue (the first caller's message first, then the others in the order they came).
  Calls made from then on open the next batch, which goes out in parallel.
* Every caller in a handed-off batch awaits a future of its own: a caller cancelled while
  it waits never cancels the others' publish (its message may or may not be enqueued, as
  with any cancelled publish); a first caller cancelled before the hand-off still hands the
  others' messages off. If a batch of one queue is refused for one message's sake (a body
  over the broker's limit, a naive date), its messages are published one by one, so each
  caller gets its own outcome; any other error (the broker is unreachable) goes to every
  caller of that queue's batch.

The sending tasks belong to the producer; :meth:`Producer.drain` hands off a batch still
being collected and waits for them, and the app calls it before it closes its connections.
Outside asyncio (anyio on trio) there is no loop iteration to batch by: each call publishes
at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from chicory.broker import OutgoingMessage
from chicory.errors import MessageTooLargeError

__all__ = ["Producer"]

Publish = Callable[[str, Sequence[OutgoingMessage]], Awaitable[None]]
"""``publish(queue, messages)``: one ``publish`` or one ``publish_many`` (the app's)."""

_PER_MESSAGE_ERRORS = (MessageTooLargeError, ValueError)
"""Errors a broker raises for one message of a batch; the others are then sent alone."""


class _Batch:
    """What callers of one loop iteration publish: messages and futures, by queue.

    The first caller's message comes first; its future is made only if the batch is handed
    to a sending task (alone, the first caller publishes it itself).
    """

    __slots__ = ("futures", "lead_queue", "loop", "messages", "sent", "size")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: str, message: OutgoingMessage):
        self.loop = loop
        self.messages: dict[str, list[OutgoingMessage]] = {queue: [message]}
        self.futures: dict[str, list[asyncio.Future[None] | None]] = {queue: [None]}
        self.lead_queue = queue
        self.size = 1
        self.sent = False

    def add(self, queue: str, message: OutgoingMessage) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        messages = self.messages.get(queue)
        if messages is None:
            self.messages[queue] = [message]
            self.futures[queue] = [future]
        else:
            messages.append(message)
            self.futures[queue].append(future)
        self.size += 1
        return future

    def lead_future(self) -> asyncio.Future[None]:
        """The first caller's future, made on first use."""
        futures = self.futures[self.lead_queue]
        future = futures[0]
        if future is None:
            future = futures[0] = self.loop.create_future()
        return future


class Producer:
    """Coalesces the single publishes of concurrent callers; see the module docstring.

    Args:
        publish: Publishes encoded messages to one queue (the app's connected path).
    """

    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._batch: _Batch | None = None
        self._senders: set[asyncio.Task[None]] = set()

    @property
    def sending(self) -> int:
        """Batches being sent right now."""
        return len(self._senders)

    def submit(self, queue: str, message: OutgoingMessage) -> Awaitable[None]:
        """What :meth:`publish` does, awaited by the caller: while a batch is being
        collected, the caller's own future in it (no coroutine in between).

        Raises (when awaited):
            BrokerError: publishing failed (and whatever else the broker's ``publish``
                raised for this message, as it is).
        """
        batch = self._batch
        if batch is not None:
            return batch.add(queue, message)
        return self.publish(queue, message)

    async def publish(self, queue: str, message: OutgoingMessage) -> None:
        """Publish one message together with the other callers of this loop iteration.

        Raises:
            BrokerError: publishing failed (and whatever else the broker's ``publish``
                raised for this message, as it is).
        """
        batch = self._batch
        if batch is not None:
            await batch.add(queue, message)
            return
        loop = asyncio._get_running_loop()
        if loop is None:
            await self._publish(queue, (message,))
            return
        batch = self._batch = _Batch(loop, queue, message)
        try:
            await asyncio.sleep(0)  # every call made in this iteration joins the batch
        except BaseException:
            if not batch.sent and batch.size > 1:  # the others' messages go out all the same
                self._hand_off(batch)
            raise
        finally:
            if self._batch is batch:
                self._batch = None  # calls from now on open the next batch
        if batch.sent:  # drain() handed it to a sender meanwhile
            await batch.lead_future()
        elif batch.size == 1:  # alone: published from this task, as without batching
            batch.sent = True
            await self._publish(queue, (message,))
        else:
            future = batch.lead_future()
            self._hand_off(batch)
            await future

    def _hand_off(self, batch: _Batch) -> None:
        batch.lead_future()
        batch.sent = True
        if self._batch is batch:
            self._batch = None
        sender = batch.loop.create_task(self._send(batch), name="chicory-producer")
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)

    def reset(self) -> None:
        """Forget a batch still being collected (its loop ended; its callers are gone)."""
        self._batch = None

    async def drain(self) -> None:
        """Wait until every batch collected so far has been sent."""
        batch = self._batch
        if batch is not None and not batch.sent:
            self._hand_off(batch)
        while self._senders:
            await asyncio.gather(*self._senders, return_exceptions=True)

    async def _send(self, batch: _Batch) -> None:
        try:
            for queue, messages in batch.messages.items():
                futures = batch.futures[queue]
                try:
                    await self._publish(queue, messages)
                except _PER_MESSAGE_ERRORS as error:
                    if len(messages) == 1:
                        _fail(futures, error)
                    else:
                        await self._one_by_one(queue, messages, futures)
                except Exception as error:
                    _fail(futures, error)
                else:
                    for future in futures:
                        if future is not None and not future.done():
                            future.set_result(None)
        finally:  # cancelled (the loop is shutting down): nobody may wait forever
            for futures in batch.futures.values():
                _fail(futures, RuntimeError("publishing was cancelled: its event loop stopped"))

    async def _one_by_one(
        self,
        queue: str,
        messages: list[OutgoingMessage],
        futures: list[asyncio.Future[None] | None],
    ) -> None:
        for message, future in zip(messages, futures, strict=True):
            try:
                await self._publish(queue, (message,))
            except Exception as error:
                _fail([future], error)
            else:
                if future is not None and not future.done():
                    future.set_result(None)


def _fail(futures: list[asyncio.Future[None] | None], error: BaseException) -> None:
    """Fail every caller still waiting on ``futures`` with ``error``."""
    for future in futures:
        if future is not None and not future.done():
            future.set_exception(error)
