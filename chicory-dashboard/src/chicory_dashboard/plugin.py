"""Registers the Chicory dashboard with ``chicory plugins``; imports nothing heavy.

The dashboard offers no broker or result backend: ``chicory dashboard APP`` and
:func:`chicory_dashboard.create_dashboard` are its ways in.
"""

from __future__ import annotations

__all__: list[str] = []
