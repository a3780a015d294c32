"""Reading what an operator types: the app to load, times, JSON arguments.

Every mistake is a :class:`~chicory.errors.ConfigurationError` saying what to type instead,
which the CLI turns into exit code 2 (a usage error).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chicory.app import Chicory
from chicory.errors import ConfigurationError

__all__ = ["load_app", "parse_json", "parse_time"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def load_app(spec: str) -> Chicory:
    """Import ``module:attribute`` (attribute defaults to ``app``) and return the app.

    Raises:
        ConfigurationError: the module cannot be imported or the attribute is not a
            Chicory app.
    """
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"cannot import {module_name!r}: {exc}. Run from the directory that contains it, "
            "or install it"
        ) from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, Chicory):
        raise ConfigurationError(
            f"{spec!r} is not a Chicory app; point at one, like 'myproject.tasks:app'"
        )
    return app


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An operator's time: ISO-8601 (``2024-06-01``, ``2024-06-01T12:00``, with or without a
    zone; without one it is UTC) or a span ago (``30s``, ``15m``, ``2h``, ``1d``, ``1w``).

    Raises:
        ConfigurationError: neither.
    """
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(seconds=float(relative.group(1)) * _UNITS[relative.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"{text!r} is not a time; give an ISO-8601 date or time (2024-06-01, "
            "2024-06-01T12:30, times without a zone are UTC) or a span ago (30m, 2h, 1d)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_json(text: str, kind: type, option: str) -> Any:
    """``text`` as JSON of ``kind`` (``list`` or ``dict``).

    Raises:
        ConfigurationError: not JSON, or not of that kind.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"{option} is not JSON ({exc}): {text!r}") from None
    if not isinstance(value, kind):
        shape = "an array, like '[1, \"a\"]'" if kind is list else "an object, like '{\"x\": 1}'"
        raise ConfigurationError(f"{option} must be a JSON {shape}; got {text!r}")
    return value
