"""Parsing of ``memory://`` URLs: the scheme, and options carried in the query string."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from chicory.errors import ConfigurationError
from chicory.redact import redact_url
from chicory.urloptions import Converter, convert_options, optional_text

__all__ = ["parse_memory_url"]


def parse_memory_url(url: str, allowed: Mapping[str, Converter | None]) -> dict[str, Any]:
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
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    known = {name: kind or optional_text for name, kind in allowed.items()}
    options = convert_options(pairs, known, url=shown, scheme="memory://")
    return {name: value for name, value in options.items() if allowed[name] is not None}
