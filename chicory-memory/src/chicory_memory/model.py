"""The records the memory broker stores, without the rules that change them (see ``store``).

* :class:`Message`: body, headers, id and delivery count; it lives in exactly one place at a
  time: a queue's ready deque or delayed heap, a :class:`Held` record, or nowhere (settled).
* :class:`QueueState`: one queue's ready deque, delayed heap, in-flight count, dead letters
  and waiting fetches.
* :class:`Held`: one delivery: which message, which consumer, its token, lease deadline and
  :class:`DeliveryState`. The token is unique per delivery, so a redelivered message gets a
  new ``Held`` and an old one can never settle it.
* :class:`Subscription`: one consumer's queues, the deliveries it holds, its round-robin
  position and waiting fetches.
"""

from __future__ import annotations

import enum
from collections import deque

import anyio

from chicory.broker import DeadLetter

__all__ = ["DeliveryState", "Held", "Message", "QueueState", "Subscription"]


class DeliveryState(enum.Enum):
    """Where one delivery stands."""

    HELD = "held"
    """Fetched and unsettled; its lease runs."""
    ACKED = "acked"
    """Acked (``dead_letter`` may still record a copy)."""
    SETTLED = "settled"
    """Nacked, retried or dead-lettered; nothing further takes effect."""
    EXPIRED = "expired"
    """Its lease ran out and the message became ready again."""
    HANDED_BACK = "handed back"
    """Its consumer closed and gave the message back."""


class Message:
    """One message: stable across redeliveries until it is acked, dropped or dead-lettered."""

    __slots__ = ("body", "deliveries", "headers", "id", "queue")

    def __init__(
        self, msg_id: str, queue: QueueState, body: bytes, headers: dict[str, str]
    ) -> None:
        self.id = msg_id
        self.queue = queue
        self.body = body
        self.headers = headers
        self.deliveries = 0


class QueueState:
    """Everything stored for one queue (see the module docstring)."""

    __slots__ = ("dead", "delayed", "in_flight", "name", "ready", "waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready: deque[Message] = deque()
        self.delayed: list[tuple[float, int, Message]] = []
        self.in_flight = 0
        self.dead: dict[str, DeadLetter] = {}
        self.waiters: set[anyio.Event] = set()

    def wake(self) -> None:
        """Wake every fetch waiting on this queue."""
        for event in self.waiters:
            event.set()
        self.waiters.clear()


class Held:
    """The state of one delivery: which message, which consumer, until when."""

    __slots__ = ("count", "deadline", "message", "state", "subscription", "token")

    def __init__(
        self, subscription: Subscription, message: Message, token: int, deadline: float
    ) -> None:
        self.subscription = subscription
        self.message = message
        self.token = token
        self.deadline = deadline
        self.count = message.deliveries
        self.state = DeliveryState.HELD


class Subscription:
    """One consumer's share of the state: its queues, what it holds, who waits on it."""

    __slots__ = ("closed", "held", "next_index", "prefetch", "queues", "waiters")

    def __init__(self, queues: list[QueueState], prefetch: int) -> None:
        self.queues = queues
        self.prefetch = prefetch
        self.held: dict[int, Held] = {}
        self.closed = False
        self.next_index = 0
        self.waiters: set[anyio.Event] = set()

    def is_open(self) -> bool:
        """Whether the consumer is still open."""
        return not self.closed

    def wake(self) -> None:
        """Wake every fetch of this consumer (capacity freed, or closed)."""
        for event in self.waiters:
            event.set()
        self.waiters.clear()
