"""Options a backend reads from its URL's query string (and from keyword arguments).

Every broker and result backend takes options the same way: ``redis://host?lease_seconds=5``,
``sqlite:///queue.db?busy_timeout=2``, or ``from_url(url, lease_seconds=5)``. This module
gives plugins one reading of them, so that every backend accepts the same spellings and
refuses a bad option with the same kind of message:

* converters from a query value (a string) or a keyword value (already typed):
  :func:`flag`, :func:`integer`, :func:`number`, :func:`optional_integer`,
  :func:`optional_number`, :func:`optional_text` (``none`` or an empty value reads as
  ``None``: no limit);
* :func:`convert_options`: check names against a table of converters and convert the values,
  with an error that names the option, the (redacted) URL and every option accepted;
* attrs validators :func:`positive` and :func:`not_negative` for settings classes.

A plugin keeps its own table of options (name → converter) and its own settings class; only
the reading is shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import attrs

from chicory.errors import ConfigurationError

__all__ = [
    "Converter",
    "convert_options",
    "flag",
    "integer",
    "not_negative",
    "number",
    "optional_integer",
    "optional_number",
    "optional_text",
    "positive",
]

Converter: TypeAlias = Callable[[Any], Any]
"""Turns one option's value, as a query string gives it or as a keyword argument, into the
setting's type; raises ``ValueError`` or ``TypeError`` for a value it cannot read."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_NONE = frozenset({"", "none"})


def flag(value: object) -> bool:
    """A boolean: ``True``/``False``, or ``1``/``0``, ``true``/``false``, ``yes``/``no``,
    ``on``/``off`` in any case.

    Raises:
        ValueError: any other value.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def integer(value: object) -> int:
    """A whole number (an ``int``, or its decimal text).

    Raises:
        ValueError: not a whole number.
    """
    return value if isinstance(value, int) else int(str(value))


def number(value: object) -> float:
    """A number (an ``int`` or ``float``, or its text).

    Raises:
        ValueError: not a number.
    """
    return float(value) if isinstance(value, int | float) else float(str(value))


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def optional_integer(value: object) -> int | None:
    """:func:`integer`, or ``None`` for ``None``, ``none`` or an empty value (no limit)."""
    return None if _is_none(value) else integer(value)


def optional_number(value: object) -> float | None:
    """:func:`number`, or ``None`` for ``None``, ``none`` or an empty value (no limit)."""
    return None if _is_none(value) else number(value)


def optional_text(value: object) -> str | None:
    """The value as text, or ``None`` for ``None``."""
    return None if value is None else str(value)


_KINDS: Mapping[object, str] = {
    flag: "boolean (true or false)",
    integer: "whole number",
    int: "whole number",
    number: "number",
    float: "number",
    optional_integer: "whole number (or none)",
    optional_number: "number (or none)",
    optional_text: "text",
    str: "text",
}


def convert_options(
    values: Iterable[tuple[str, Any]],
    known: Mapping[str, Converter],
    *,
    url: str,
    scheme: str,
    hint: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Convert named option values with the converters of ``known``.

    Args:
        values: ``(name, value)`` pairs, query parameters first and keyword options after
            them (a later value of a name replaces an earlier one).
        known: Every option accepted, with its converter.
        url: The URL the options came with, as it may be shown (already redacted).
        scheme: How the error names the backend, e.g. ``"redis://"``.
        hint: Given an unknown option's name, a sentence to add to the error (or ``""``),
            e.g. where credentials go instead.

    Raises:
        ConfigurationError: an option ``known`` does not list, or a value its converter
            refuses; the message names the option, the URL and what is accepted.
    """
    options: dict[str, Any] = {}
    for name, value in values:
        convert = known.get(name)
        if convert is None:
            extra = hint(name) if hint is not None else ""
            accepted = ", ".join(sorted(known)) or "none"
            raise ConfigurationError(
                f"unknown option {name!r} (for {url}){'; ' + extra if extra else ''}; "
                f"{scheme} accepts: {accepted}"
            )
        try:
            options[name] = convert(value)
        except (TypeError, ValueError):
            kind = _KINDS.get(convert, "value of its type")
            raise ConfigurationError(
                f"option {name}={value!r} (for {url}) is not a valid {kind}"
            ) from None
    return options


def positive(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    """attrs validator: the setting is ``None`` or above zero.

    Raises:
        ConfigurationError: zero or negative.
    """
    if value is not None and not value > 0:
        raise ConfigurationError(f"{attribute.name} must be positive, got {value!r}")


def not_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    """attrs validator: the setting is zero or above.

    Raises:
        ConfigurationError: negative (or not a number).
    """
    if not value >= 0:
        raise ConfigurationError(f"{attribute.name} cannot be negative, got {value!r}")
