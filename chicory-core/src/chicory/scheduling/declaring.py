"""The app's face for periodic tasks: ``@app.periodic(...)`` and ``app.schedule(...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.scheduling.schedule import MissedFires, Schedule
    from chicory.task import Task

__all__ = ["PeriodicTasks"]

P = ParamSpec("P")
R = TypeVar("R")


class PeriodicTasks:
    """Mixed into :class:`~chicory.app.Chicory`: declaring periodic tasks on the app."""

    schedules: dict[str, Schedule]

    def periodic(
        self,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue: str | None = None,
        missed: MissedFires = "catch_up_last",
        start: datetime | None = None,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Run a task periodically: put ``@app.periodic(...)`` above its ``@app.task``.

        ``chicory scheduler APP`` (or ``chicory worker APP --scheduler``) fires it; see
        :meth:`schedule` for the arguments and :mod:`chicory.scheduling` for the rules.
        """

        def declare(task: Task[P, R]) -> Task[P, R]:
            self.schedule(
                task,
                cron=cron,
                every=every,
                tz=tz,
                args=args,
                kwargs=kwargs,
                name=name,
                queue=queue,
                missed=missed,
                start=start,
            )
            return task

        return declare

    def schedule(
        self,
        task: Task[..., Any],
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        queue: str | None = None,
        missed: MissedFires = "catch_up_last",
        start: datetime | None = None,
    ) -> Schedule:
        """Add a periodic run of ``task`` to :attr:`schedules` and return it.

        Args:
            task: A task of this app.
            cron: A five-field cron expression (``"0 2 * * *"``), read in ``tz``; needs the
                ``chicory-core[scheduler]`` extra. Exclusive with ``every``.
            every: An interval (a ``timedelta`` or seconds): fires at ``start + k * every``.
            tz: The IANA time zone of ``cron`` (default UTC).
            args: Positional arguments of every run.
            kwargs: Keyword arguments of every run.
            name: The schedule's name (default: the task's name); name two schedules of
                one task apart with it.
            queue: The queue fires go to (default: the task's).
            missed: Fires that fell due while no scheduler ran: ``"catch_up_last"`` fires
                the latest once at start, ``"skip"`` drops them.
            start: The aware instant intervals count from (default: the Unix epoch).

        Raises:
            ConfigurationError: the schedule cannot work (see the message).
            ArgumentValidationError: ``args``/``kwargs`` do not fit the task.
        """
        from chicory.scheduling.schedule import declare

        return declare(
            cast("Chicory", self),  # the app this mixin is part of
            task,
            cron=cron,
            every=every,
            tz=tz,
            args=args,
            kwargs=kwargs,
            name=name,
            queue=queue,
            missed=missed,
            start=start,
        )
