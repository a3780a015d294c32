"""Periodic tasks declared in code: :class:`Schedule`, and how the app registers them.

::

    @app.periodic(cron="0 2 * * *", tz="Europe/Paris", args=("daily",))
    @app.task(name="reports.nightly")
    async def nightly_report(kind: str) -> None: ...

    app.schedule(cleanup, every=timedelta(minutes=5), name="cleanup")

Declaring checks everything it can at once (the expression, the zone, the arguments against
the task's signature), so a typo fails at import, not at 02:00. ``chicory scheduler APP``
fires them (:mod:`chicory.scheduling.runner`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal

import attrs

from chicory.errors import ConfigurationError
from chicory.scheduling import timing

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.task import Task

__all__ = ["MissedFires", "Schedule", "declare"]

MissedFires = Literal["catch_up_last", "skip"]
"""What a scheduler does at start with fires that fell due while no scheduler ran:
``"catch_up_last"`` fires the latest of them once (the default), ``"skip"`` drops them."""


@attrs.frozen(kw_only=True)
class Schedule:
    """One periodic task: which task, with which arguments, when.

    Build them with :meth:`Chicory.periodic <chicory.app.Chicory.periodic>` or
    :meth:`Chicory.schedule <chicory.app.Chicory.schedule>`, which check them.

    Attributes:
        name: Unique among the app's schedules; part of every fire's task id.
        task: The task's registered name.
        args: Positional arguments of every run.
        kwargs: Keyword arguments of every run.
        cron: A five-field cron expression (exclusive with ``every``).
        tz: The IANA time zone ``cron`` is read in.
        every: The interval (exclusive with ``cron``).
        start: The instant intervals count from (aware; the Unix epoch by default).
        queue: The queue fires go to (``None``: the task's).
        missed: What to do with fires missed while no scheduler ran (:data:`MissedFires`).
    """

    name: str
    task: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    cron: str | None = None
    tz: str = "UTC"
    every: timedelta | None = None
    start: datetime = timing.EPOCH
    queue: str | None = None
    missed: MissedFires = "catch_up_last"

    @property
    def zone(self) -> tzinfo:
        """The time zone ``cron`` is read in."""
        return timing.zone(self.tz)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire strictly after ``moment`` (aware), in UTC."""
        if self.every is not None:
            return timing.interval_after(self.every, self.start, moment)
        assert self.cron is not None
        return timing.cron_after(self.cron, self.zone, moment)

    def last_at_or_before(self, moment: datetime) -> datetime | None:
        """The last fire at or before ``moment`` (aware), in UTC; ``None`` if none (before
        an interval's ``start``, or none in the year before for a cron)."""
        if self.every is not None:
            return timing.interval_before(self.every, self.start, moment)
        assert self.cron is not None
        return timing.cron_before(self.cron, self.zone, moment)

    def fire_id(self, at: datetime) -> str:
        """The task id of the fire due at ``at``: the schedule's name and the fire's UTC
        time, the same in every scheduler (``nightly@2026-12-06T01:00:00Z``)."""
        moment = at.astimezone(UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if moment.microsecond:
            stamp += f".{moment.microsecond:06d}"
        return f"{self.name}@{stamp}Z"

    def describe(self) -> str:
        """When it fires, for humans: ``cron 0 2 * * * (Europe/Paris)``, ``every 0:05:00``."""
        if self.every is not None:
            return f"every {self.every}"
        return f"cron {self.cron} ({self.tz})"


def declare(
    app: Chicory,
    task: Task[..., Any],
    *,
    cron: str | None,
    every: timedelta | float | None,
    tz: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    name: str | None,
    queue: str | None,
    missed: MissedFires,
    start: datetime | None,
) -> Schedule:
    """Check a schedule of ``task`` and add it to ``app.schedules``.

    Raises:
        ConfigurationError: neither or both of ``cron``/``every``, a bad expression, zone,
            interval, start or policy, a name in use, or ``cron`` without the
            ``chicory-core[scheduler]`` extra.
        ArgumentValidationError: ``args``/``kwargs`` do not fit the task.
    """
    label = name or task.name
    where = f"schedule {label!r}"
    if (cron is None) == (every is None):
        raise ConfigurationError(
            f"{where}: pass cron='...' (e.g. '0 2 * * *') or every=timedelta(...), one of them"
        )
    if label in app.schedules:
        raise ConfigurationError(
            f"{where}: a schedule of that name exists already; pass name=... to tell them apart"
        )
    if missed not in ("catch_up_last", "skip"):
        raise ConfigurationError(
            f"{where}: missed must be 'catch_up_last' or 'skip', not {missed!r}"
        )
    if task.app is not app or app.tasks.get(task.name) is not task:
        raise ConfigurationError(f"{where}: task {task.name!r} is not a task of this app")
    interval: timedelta | None = None
    if every is not None:
        interval = every if isinstance(every, timedelta) else timedelta(seconds=every)
        if interval <= timedelta(0):
            raise ConfigurationError(f"{where}: every must be positive, got {every!r}")
        if tz != "UTC":
            raise ConfigurationError(
                f"{where}: tz applies to cron only (intervals are elapsed time)"
            )
    else:
        assert cron is not None
        timing.check_cron(cron)
        if start is not None:
            raise ConfigurationError(f"{where}: start applies to every= only")
    timing.zone(tz)
    if start is not None and start.tzinfo is None:
        raise ConfigurationError(f"{where}: start must be an aware datetime")
    task.signature.bind(tuple(args), dict(kwargs or {}), task.validation_mode)
    schedule = Schedule(
        name=label,
        task=task.name,
        args=tuple(args),
        kwargs=dict(kwargs or {}),
        cron=cron,
        tz=tz,
        every=interval,
        start=(start or timing.EPOCH).astimezone(UTC),
        queue=queue,
        missed=missed,
    )
    app.schedules[label] = schedule
    return schedule
