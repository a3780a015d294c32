"""PostgreSQL broker and result backend for Chicory (``postgresql://``, ``postgres://``)."""

from __future__ import annotations

__all__: list[str] = []
