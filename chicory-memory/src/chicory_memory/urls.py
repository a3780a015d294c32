"""Parsing of ``memory://`` URLs: the scheme, and options carried in the query string."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chicory.errors import ConfigurationError
from chicory.redact import redact_url

__all__ = ["optional_float", "optional_int", "parse_memory_url"]


def optional_int(raw: str) -> int | None:
    """An integer, or ``None`` for ``none`` (no limit)."""
    return None if raw.strip().lower() in {"", "none"} else int(raw)


def optional_float(raw: str) -> float | None:
    """A number, or ``None`` for ``none`` (no limit)."""
    return None if raw.strip().lower() in {"", "none"} else float(raw)


optional_int.__name__ = "integer (or none)"
optional_float.__name__ = "number (or none)"


def parse_memory_url(
    url: str, allowed: Mapping[str, Callable[[str], Any] | None]
) -> dict[str, Any]:
    """Return the options in the query of a ``memory://`` URL, converted.

    Args:
        url: The URL, e.g. ``memory://?lease_seconds=5``.
        allowed: The option names the URL may carry, each with the function (a type, say)
            converting its value, or ``None`` to accept the option and leave it out of the
            result.

    Raises:
        ConfigurationError: not a ``memory://`` URL, or an unknown or unparsable option.
    """
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme.lower() != "memory":
        raise ConfigurationError(f"expected a memory:// URL, got {shown!r}")
    options: dict[str, Any] = {}
    for name, raw in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise ConfigurationError(
                f"unknown option {name!r} in {shown!r}; memory:// accepts: {known}"
            )
        kind = allowed[name]
        if kind is None:
            continue
        try:
            options[name] = kind(raw)
        except ValueError:
            raise ConfigurationError(
                f"option {name}={raw!r} in {shown!r} is not a valid "
                f"{getattr(kind, '__name__', 'value')}"
            ) from None
    return options
