"""The app the blocking-API tests call, and their subprocess workers run.

Workers run ``callers_app:app``, on ``CHICORY_BROKER_URL``; tests build their own copy on the
same URL with :func:`build`.
"""

from __future__ import annotations

import os

from chicory import Chicory, RetryPolicy, Task


def build(url: str | None = None) -> Chicory:
    """The app on ``url`` (default: ``CHICORY_BROKER_URL``, else ``memory://``)."""
    app = Chicory(url)

    @app.task(name="callers.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="callers.pid")
    def pid() -> int:
        """The worker's process id."""
        return os.getpid()

    @app.task(name="callers.boom", retry_policy=RetryPolicy(max_retries=0))
    async def boom(message: str) -> None:
        raise ValueError(message)

    @app.task(name="callers.total")
    async def total(values: list[int]) -> int:
        """A chord's callback: the sum of its members' results."""
        return sum(values)

    return app


def add_task(app: Chicory) -> Task[[int, int], int]:
    """The typed ``add`` task of ``app``."""
    return app.tasks["callers.add"]


app = build()
