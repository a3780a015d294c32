"""Periodic tasks: schedules declared on the app, fired by ``chicory scheduler``.

* :mod:`chicory.scheduling.schedule`: :class:`Schedule`, what ``@app.periodic`` declares;
* :mod:`chicory.scheduling.timing`: when cron expressions and intervals fire (time zones,
  daylight saving);
* :mod:`chicory.scheduling.runner`: :class:`Scheduler`, which fires them, once each however
  many schedulers run (each fire is a unique enqueue, :mod:`chicory.unique`);
* :mod:`chicory.scheduling.manual`: firing a schedule now, by hand (a unique enqueue);
* :mod:`chicory.scheduling.records`: the "last fire" record each schedule keeps in the
  result backend, from which a restarted scheduler tells which fires it missed.

Nothing here imports cronsim until a cron schedule is declared.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Fire", "Schedule", "Scheduler"]

_WHERE = {"Fire": "runner", "Schedule": "schedule", "Scheduler": "runner"}


def __getattr__(name: str) -> Any:
    # Imported on first use: chicory.app imports this package while it is being defined.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'chicory.scheduling' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chicory.scheduling.{module}"), name)
