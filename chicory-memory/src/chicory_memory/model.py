"""The records the memory broker stores, without the rules that change them (see ``store``).

* :data:`Message`: ``(id, body, headers, deliveries, since)``, a plain tuple; it lives in
  exactly one place at a time: a queue's ready deque or delayed heap, a :class:`Held` record,
  or nowhere (settled).
* :class:`QueueState`: one queue's ready deque, delayed heap, in-flight count, dead letters
  waiting fetches and unique keys' claims.
* :class:`Held`: one delivery: which message of which queue, which consumer, its token, lease
  deadline and :class:`DeliveryState`. The token is unique per delivery, so a redelivered
  message gets a new ``Held`` and an old one can never settle it.
* :class:`Subscription`: one consumer's queues, the deliveries it holds, its round-robin
  position and waiting fetches.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Final, NamedTuple, TypeAlias

import anyio

from chicory.broker import DeadLetter

__all__ = [
    "BODY",
    "DELIVERIES",
    "HEADERS",
    "MESSAGE_ID",
    "SINCE",
    "Claim",
    "DeliveryState",
    "Headers",
    "Held",
    "Message",
    "QueueState",
    "Subscription",
]


class DeliveryState(enum.Enum):
    """Where one delivery stands."""

    HELD = "held"
    """Fetched and unsettled; its lease runs."""
    ACKED = "acked"
    """Acked (``dead_letter`` may still record a copy)."""
    SETTLED = "settled"
    """Nacked, retried or dead-lettered; nothing further takes effect."""
    EXPIRED = "expired"
    """Its lease ran out (or its session was severed) and the message became ready again."""
    HANDED_BACK = "handed back"
    """Its consumer closed and gave the message back."""


Headers: TypeAlias = tuple[tuple[str, str], ...]
"""A message's headers as ``(name, value)`` pairs: a tuple, not a dict (see :data:`Message`)."""

Message: TypeAlias = tuple[str, bytes, Headers, int, float]
"""One message, ``(id, body, headers, deliveries, since)``: its id (stable across redeliveries
until it is acked, dropped or dead-lettered), body, headers, how many times it was delivered
so far, and since when it has been waiting (the clock's time it was published, or its due
time when published delayed: what ``queue_stats`` reports as the oldest ready message's age).
Which queue it belongs to is known from where it is kept.

Nothing in it is a container the garbage collector must follow (strings, bytes, numbers and
tuples of strings; a dict, even an empty one, would be), so the collector stops tracking it
once it has looked at it (a collection per level of nested tuples: one without headers): a
backlog of any size then costs later collections nothing, where an object per queued
message was examined again by every collection of its generation.
"""

MESSAGE_ID: Final = 0
BODY: Final = 1
HEADERS: Final = 2
DELIVERIES: Final = 3
SINCE: Final = 4
"""The positions of a :data:`Message`'s fields."""


class Claim(NamedTuple):
    """A unique key's claim (:mod:`chicory_memory.unique`)."""

    holder: str
    keep_until: float
    expires_at: float


class QueueState:
    """Everything stored for one queue (see the module docstring)."""

    __slots__ = ("claims", "dead", "delayed", "in_flight", "name", "ready", "waiters")

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready: deque[Message] = deque()
        self.delayed: list[tuple[float, int, Message]] = []
        self.in_flight = 0
        self.dead: dict[str, DeadLetter] = {}
        self.waiters: set[anyio.Event] = set()
        self.claims: dict[str, Claim] = {}

    def wake(self) -> None:
        """Wake every fetch waiting on this queue."""
        for event in self.waiters:
            event.set()
        self.waiters.clear()


class Held:
    """The state of one delivery: which message of which queue, which consumer, until when.

    Its ``message`` counts this delivery among its deliveries: it is what goes back to the
    queue if the delivery is handed back or its lease expires.
    """

    __slots__ = ("count", "deadline", "message", "queue", "state", "subscription", "token")

    def __init__(
        self,
        subscription: Subscription,
        queue: QueueState,
        message: Message,
        token: int,
        deadline: float,
    ) -> None:
        self.subscription = subscription
        self.queue = queue
        self.message = message
        self.token = token
        self.deadline = deadline
        self.count = message[DELIVERIES]
        self.state = DeliveryState.HELD

    @property
    def message_id(self) -> str:
        """The id of the message delivered."""
        return self.message[MESSAGE_ID]


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
