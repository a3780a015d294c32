"""Flow control: per-task rate limits and fleet-wide concurrency limits, and the broker
capability that enforces them.

A task declares its limits (``@app.task(rate_limit="100/s", concurrency_limit=5)``); every
worker of every process checks them in a store they all share, the broker's, before it
starts a run. A run over a limit does not wait in the worker: its message goes back to the
broker, delayed (see :mod:`chicory.worker.gate`), so the worker's slots keep running other
work.

**Rate limits** (:class:`RateLimit`) space a task's starts evenly: ``"100/s"`` lets one run
start every 10 ms across the fleet (a generic cell rate algorithm with a burst of one).
When a start comes too early, the broker *reserves* the next free turn for that task id and
says how long until it: the message is handed back delayed until then, and when it comes
back its turn is waiting for it. So a backlog drains at exactly the rate, in turn order,
without herds of messages waking at once to fight for one token.

**Concurrency limits** are permits: at most ``concurrency_limit`` runs of the task hold one
at a time. A permit has an expiry (``ttl``) that its worker renews while the run lasts, so a
killed worker's permits free themselves when their expiry passes (as its leases do). A run
that finds no free permit is handed back delayed a short while and tries again.

The broker capability is :class:`FlowControl`, declared by ``Capabilities(flow_control=True)``:
three small atomic operations on named keys. On a broker without it, declaring a limit raises
:class:`~chicory.errors.CapabilityError`, never a silent no-op. The conformance suite's
``FlowControlSuite`` holds a broker to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Protocol, runtime_checkable

import attrs

from chicory.broker import Broker
from chicory.errors import CapabilityError, ConfigurationError

__all__ = [
    "FlowControl",
    "RateLimit",
    "TaskFlow",
    "check_concurrency_limit",
    "flow_control",
    "task_flow",
]

_PERIODS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*([smhd])\s*")


@attrs.frozen
class RateLimit:
    """At most ``count`` starts per ``period`` seconds, evenly spaced.

    Attributes:
        count: How many starts per period (positive).
        period: The period in seconds (positive).
    """

    count: float
    period: float

    def __attrs_post_init__(self) -> None:
        if not (self.count > 0 and self.period > 0):
            raise ConfigurationError(
                f"a rate limit needs a positive count and period, got {self.count}/{self.period} s"
            )

    @property
    def interval(self) -> float:
        """Seconds between two starts."""
        return self.period / self.count

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Read ``"<count>/<unit>"``: ``"100/s"``, ``"30/m"``, ``"500/h"``, ``"2/d"``; the unit
        may carry a number (``"5/10s"``: five per ten seconds).

        Raises:
            ConfigurationError: ``text`` is not of that form, or its count is zero.
        """
        match = _RATE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigurationError(
                f"rate_limit {text!r} is not understood: write '<count>/<unit>' with a unit "
                "of s, m, h or d, such as '100/s', '30/m' or '5/10s'"
            )
        count, many, unit = match.groups()
        period = float(many or 1) * _PERIODS[unit]
        if not float(count) > 0 or not period > 0:
            raise ConfigurationError(f"rate_limit {text!r} must allow at least one start")
        return cls(float(count), period)

    def __str__(self) -> str:
        return f"{self.count:g}/{self.period:g}s"


def check_concurrency_limit(what: str, limit: int | None) -> None:
    """Check a ``concurrency_limit`` as a user gave it.

    Raises:
        ConfigurationError: it is not a positive integer.
    """
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ConfigurationError(
            f"{what}: concurrency_limit must be a positive integer (runs at once across "
            f"every worker), got {limit!r}"
        )


@runtime_checkable
class FlowControl(Protocol):
    """The ``flow_control`` capability: rate turns and permits in the broker's shared store.

    Keys are opaque strings chosen by core (one per task name); a broker keeps each key's
    state apart from every other key's and from its queues, and expires what it no longer
    needs. Times are the broker's clock (a server's clock for a networked broker). Every
    method is atomic with respect to every other call on the same key, from any process,
    may raise :class:`~chicory.errors.BrokerConnectionError`, and may be cancelled (a
    cancelled call happened whole or not at all).
    """

    async def take_turn(self, key: str, holder: str, *, interval: float) -> float:
        """Take the next start of the rate limit ``key`` (one start every ``interval`` s).

        If ``holder`` (a task id) holds a reserved turn that is due, it is used: return 0.0.
        If its turn is not due yet, return the seconds until it is. Otherwise, if a start is
        free now (none was taken less than ``interval`` ago, or reserved ahead), take it and
        return 0.0; if not, reserve the next free turn for ``holder`` and return the seconds
        until it. Turns are ``interval`` apart: no two starts of one key are granted closer.
        A reservation not used for a long while after its time (an hour) may be dropped.
        """
        ...

    async def acquire_permit(self, key: str, holder: str, *, limit: int, ttl: float) -> bool:
        """Take one of the ``limit`` permits of ``key`` for ``holder``, for ``ttl`` seconds.

        Returns False, taking nothing, when ``limit`` permits are held by others and none has
        expired. A holder that holds one already keeps it (its expiry renewed) and gets True.
        """
        ...

    async def renew_permits(self, key: str, holders: Sequence[str], *, ttl: float) -> None:
        """Make the permits of ``key`` held by ``holders`` expire ``ttl`` s from now; a
        holder whose permit expired or was released gets none back."""
        ...

    async def release_permit(self, key: str, holder: str) -> None:
        """Free the permit of ``key`` held by ``holder`` (nothing if it holds none)."""
        ...


def flow_control(broker: Broker, *, needed_for: str) -> FlowControl:
    """Return ``broker`` as a :class:`FlowControl`, or say why it is not one.

    Raises:
        CapabilityError: the broker does not declare ``Capabilities(flow_control=True)``.
    """
    if not getattr(broker.capabilities, "flow_control", False) or not isinstance(
        broker, FlowControl
    ):
        raise CapabilityError(
            f"{needed_for} needs a broker with the 'flow_control' capability, and "
            f"{broker!r} does not declare it (Capabilities.flow_control=False): its workers "
            "could not share the limit. Use a broker that has it (memory://, redis://), or "
            "drop the limit"
        )
    return broker


@attrs.frozen
class TaskFlow:
    """The flow limits of one task (what the worker's gate checks before a run).

    Attributes:
        key: The key of the task's limits in the broker's store (its name).
        rate: Its rate limit, if any.
        concurrency: Its concurrency limit, if any.
    """

    key: str
    rate: RateLimit | None = None
    concurrency: int | None = None


def task_flow(
    broker: Broker, name: str, rate_limit: str | RateLimit | None, concurrency_limit: int | None
) -> TaskFlow | None:
    """The :class:`TaskFlow` of task ``name`` from its options (``None`` without limits).

    Raises:
        ConfigurationError: a limit is malformed.
        CapabilityError: a limit is set and ``broker`` lacks the ``flow_control`` capability.
    """
    check_concurrency_limit(f"task {name!r}", concurrency_limit)
    if rate_limit is None and concurrency_limit is None:
        return None
    rate = (
        rate_limit
        if rate_limit is None or isinstance(rate_limit, RateLimit)
        else RateLimit.parse(rate_limit)
    )
    what = "rate_limit" if concurrency_limit is None else "concurrency_limit"
    flow_control(broker, needed_for=f"task {name!r} ({what})")
    return TaskFlow(key=name, rate=rate, concurrency=concurrency_limit)
