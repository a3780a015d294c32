"""Flow control: per-task rate limits and fleet-wide concurrency limits, and the broker
capability that enforces them.

A task declares its limits (``@app.task(rate_limit="100/s", concurrency_limit=5)``); every
worker of every process checks them in a store they all share, the broker's, before it
starts a run. A run over a limit does not wait in the worker: its message goes back to the
broker, delayed (see :mod:`chicory.worker.gate`), so the worker's slots keep running other
work.

**Rate limits** (:class:`RateLimit`): ``"100/s"`` lets at most 100 runs of the task start in
any one-second window, across the fleet (a sliding window, kept in the broker). A start that
finds the window full, or others waiting before it, joins the limit's *waiting line*: the
broker gives it a turn (turns are one period/count apart, the first when the window frees a
start) and says how long until then, and the message is handed back delayed until its turn.
When it comes back it starts if the window has room; if it came back late and the window
filled meanwhile, it takes a new turn at the end of the line. So the limit is not exceeded
(by more than :func:`turn_slack`, the jitter a returning message is forgiven), whatever
comes back when; a backlog drains at the rate, evenly spaced, in line
order; and newcomers queue behind the line rather than overtake it.

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
    "turn_slack",
]

_PERIODS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE: Final = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*")


@attrs.frozen
class RateLimit:
    """At most ``count`` starts in any window of ``period`` seconds.

    Attributes:
        count: How many starts per window (a positive integer).
        period: The window in seconds (positive).
    """

    count: int
    period: float

    def __attrs_post_init__(self) -> None:
        if not (type(self.count) is int and self.count > 0 and self.period > 0):
            raise ConfigurationError(
                f"a rate limit needs a positive count and period, got {self.count}/{self.period} s"
            )

    @property
    def interval(self) -> float:
        """Seconds between two turns of the waiting line (``period / count``)."""
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
        if not int(count) > 0 or not period > 0:
            raise ConfigurationError(f"rate_limit {text!r} must allow at least one start")
        return cls(int(count), period)

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def turn_slack(interval: float) -> float:
    """The jitter a start coming back for its turn is forgiven, for turns ``interval``
    apart: it counts as started at its turn if it comes up to this much later (one
    interval, at most 50 ms), so a message delivered a few milliseconds later than the one
    before it does not lose its turn."""
    return min(interval, 0.05)


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

    async def take_turn(self, key: str, holder: str, *, limit: int, period: float) -> float:
        """Ask to start one run under the rate limit ``key``: at most ``limit`` starts in any
        window of ``period`` seconds.

        Returns 0.0 when the run may start now (the start is counted), else the seconds
        until ``holder``'s turn in the waiting line:

        * ``holder`` (a task id) has a turn that is not due: the seconds until it.
        * It has a due turn, or no turn while nobody waits in line: it starts if fewer than
          ``limit`` starts were counted in the last ``period`` seconds. A start on a due turn
          counts at its turn's time, or :func:`turn_slack` before now if it came later.
        * Otherwise it takes a turn at the end of the line: after every turn given out (one
          ``period / limit`` apart) and no sooner than the window frees a start.

        A turn unused for long after its time (an hour) may be dropped.
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
            "could not share the limit. Use a broker that has it (memory://, redis://, "
            "sqlite://, postgresql://), or drop the limit"
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
