"""How the dashboard shows a running task's progress (``ctx.set_progress(value, meta)``).

A task reports ``value`` on its own scale, so the dashboard draws a bar only when it can
tell the scale: a ``value`` from 0 to 1 is a fraction, and any other ``value`` is a count
of a ``total`` the task put in ``meta`` (``{"total": 200}``). Otherwise it shows the
number alone. ``meta`` is shown as it was reported.
"""

from __future__ import annotations

from typing import Any

import attrs

from chicory.records import TaskProgress

__all__ = ["ProgressView", "progress_view"]


@attrs.frozen(kw_only=True)
class ProgressView:
    """A progress report as the dashboard shows it.

    Attributes:
        value: The reported value, for humans (``0.25``, ``1200``).
        fraction: How far along, from 0 to 1, when the scale is known; else ``None``.
        meta: The reported details (``None`` if none).
    """

    value: str
    fraction: float | None
    meta: Any

    @property
    def percent(self) -> str:
        """The fraction as a percentage for humans (``"25%"``), or ``""`` without one."""
        return "" if self.fraction is None else f"{self.fraction * 100:.0f}%"


def _total(meta: Any) -> float | None:
    if not isinstance(meta, dict):
        return None
    total = meta.get("total")
    if isinstance(total, bool) or not isinstance(total, int | float) or total <= 0:
        return None
    return float(total)


def progress_view(progress: TaskProgress | None) -> ProgressView | None:
    """What to show of ``progress`` (``None``: nothing reported)."""
    if progress is None:
        return None
    value = progress.value
    fraction: float | None = None
    if 0.0 <= value <= 1.0:
        fraction = value
    elif (total := _total(progress.meta)) is not None and value >= 0:
        fraction = min(value / total, 1.0)
    text = f"{value:g}"
    return ProgressView(value=text, fraction=fraction, meta=progress.meta)
