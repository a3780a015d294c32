"""Message priorities: which ready message of a queue a worker gets first.

A priority is an integer from :data:`MIN_PRIORITY` (0) to :data:`MAX_PRIORITY` (9); **higher
runs first**, as in RabbitMQ and Celery's AMQP transport. A message without one has priority
0, the lowest: priorities lift urgent work above the rest, they do not push work below it.
Within one priority, ready messages come in the order they became ready.

A task sets a default (``@app.task(priority=5)``) and a call may set its own
(``apply_async(..., priority=9)``). It travels in the ``chicory-priority`` header, so a
retry, a rate-limited wait or a dead letter's replay keeps it.

Only a broker declaring ``Capabilities(priorities=True)`` honours it (the memory, Redis,
SQLite and PostgreSQL brokers do). Asking another broker for a priority raises
:class:`~chicory.errors.CapabilityError`: work silently run in the wrong order is worse than
an error. What a priority orders is the *ready* messages of *one* queue: a delayed message
competes once it is due, a message already prefetched by a worker runs before anything
published later, and a worker consuming several queues serves them round-robin. For strict
separation (a queue for urgent work with its own workers) use queues.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from chicory.broker import Broker
from chicory.errors import CapabilityError, ConfigurationError

__all__ = [
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "PRIORITY_HEADER",
    "check_priority",
    "priority_of",
    "require_priorities",
]

PRIORITY_HEADER: Final = "chicory-priority"
"""The header carrying a message's priority (decimal digits)."""

MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 9


def check_priority(what: str, priority: int | None) -> None:
    """Check a priority as a user gave it.

    Raises:
        ConfigurationError: it is not an integer from 0 to 9.
    """
    if priority is not None and (
        type(priority) is not int or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"{what}: priority must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY} "
            f"(higher runs first), got {priority!r}"
        )


def require_priorities(broker: Broker, what: str) -> None:
    """Refuse a priority on a broker that cannot honour it.

    Raises:
        CapabilityError: the broker does not declare ``Capabilities(priorities=True)``.
    """
    if not broker.capabilities.priorities:
        raise CapabilityError(
            f"{what} sets a priority, but {broker!r} does not honour priorities "
            "(Capabilities.priorities=False) and would run the message in publish order. "
            "Use a broker that has them (memory://, redis://, sqlite://, postgresql://), or "
            "route urgent work to its own queue with its own workers"
        )


def priority_of(headers: Iterable[tuple[str, str]]) -> int:
    """The priority a broker gives a message with these header pairs: 0 without a
    ``chicory-priority`` header or with one that is not a digit from 0 to 9."""
    for name, value in headers:
        if name == PRIORITY_HEADER:
            return int(value) if len(value) == 1 and value.isdigit() else 0
    return 0
