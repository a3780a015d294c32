"""Enumerations users pass to ``@app.task``: delivery and validation modes."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["DeliveryMode", "ValidationMode"]


class DeliveryMode(enum.StrEnum):
    """When the worker acknowledges a delivery, and so what a crash can cost.

    ``AT_MOST_ONCE`` acks *before* the function starts: a crash mid-task loses the task, but
    it never runs twice. ``AT_LEAST_ONCE`` acks *after* the function ran and its result was
    stored: a crash mid-task makes it run again elsewhere, so it is never lost but may be
    duplicated (make such tasks idempotent). See ``docs/delivery-modes.md``.
    """

    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"


class ValidationMode(enum.StrEnum):
    """How strictly task arguments and results are checked against type hints.

    ``NONE`` checks only that arguments bind to the signature and are JSON-encodable;
    ``INPUTS`` also structures arguments into their annotated types (on ``delay()`` and on the
    worker); ``OUTPUTS`` checks the return value against the return annotation; ``STRICT``
    does both.
    """

    NONE = "none"
    INPUTS = "inputs"
    OUTPUTS = "outputs"
    STRICT = "strict"

    @property
    def checks_inputs(self) -> bool:
        """Whether arguments are validated against their annotations."""
        return self in _CHECKS_INPUTS

    @property
    def checks_outputs(self) -> bool:
        """Whether return values are validated against the return annotation."""
        return self in _CHECKS_OUTPUTS


# Read on every task: a set lookup, not two member lookups on the enum class (slow in 3.11).
_CHECKS_INPUTS: Final = frozenset({ValidationMode.INPUTS, ValidationMode.STRICT})
_CHECKS_OUTPUTS: Final = frozenset({ValidationMode.OUTPUTS, ValidationMode.STRICT})
