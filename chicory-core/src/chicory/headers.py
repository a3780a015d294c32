"""Message headers: small string metadata that travels beside a task's body.

A task's headers are the broker message's headers, which every broker preserves verbatim.
They carry what crosses processes without being an argument: trace context (``traceparent``),
a tenant or request id, anything middleware put there. Producers set them with
``apply_async(headers=...)``, ``delay_many(headers=...)`` or a publish middleware; the task
reads them as ``ctx.headers``.

Rules, checked where a message is published (:func:`check_headers`):

* Names are 1 to :data:`MAX_NAME_LENGTH` characters of letters, digits, ``-``, ``_`` and
  ``.``, starting with a letter or digit (what HTTP, AMQP and W3C trace context can all
  carry). Case is kept as given; lowercase is the convention.
* Names starting with ``chicory-`` (in any case) are reserved for Chicory's own headers
  (the signature, a task's history); a producer cannot set them.
* Values are strings; all of a message's headers together (names and values, UTF-8) are at
  most :data:`MAX_HEADERS_BYTES`.

Headers other than the signature go with a task from one attempt to the next, into its dead
letter, and back with a replay. With a signing key, the signature covers the body and every
header but the signature itself and the task's history (see :mod:`chicory.signing`), so a
task can trust its headers as much as its arguments; that includes Chicory's own that change
what runs, such as :data:`FLOW_HEADER` (the rest of a workflow: what the worker publishes
after the task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from chicory.errors import InvalidHeaderError

__all__ = [
    "FLOW_HEADER",
    "MAX_HEADERS_BYTES",
    "MAX_NAME_LENGTH",
    "RESERVED_PREFIX",
    "check_headers",
    "is_reserved",
    "user_headers",
]

RESERVED_PREFIX: Final = "chicory-"
FLOW_HEADER: Final = "chicory-flow"
"""The reserved header carrying what follows a workflow step (:mod:`chicory.workflow`)."""
MAX_NAME_LENGTH: Final = 128
MAX_HEADERS_BYTES: Final = 16 * 1024

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_reserved(name: str) -> bool:
    """Whether ``name`` is one of Chicory's own header names (``chicory-*``, any case)."""
    return name[:8].lower() == RESERVED_PREFIX


def user_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of ``headers`` that are not reserved for Chicory."""
    return {name: value for name, value in headers.items() if not is_reserved(name)}


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Check headers a producer (or a publish middleware) sets; return them as a new dict.

    Raises:
        InvalidHeaderError: a name is not a string of the allowed characters, is reserved
            or too long; a value is not a string; or all together are too large.
    """
    checked: dict[str, str] = {}
    size = 0
    for name, value in headers.items():
        if type(name) is not str or not _NAME.fullmatch(name):
            raise InvalidHeaderError(
                f"header name {name!r} is not allowed: use 1 to {MAX_NAME_LENGTH} letters, "
                "digits, '-', '_' or '.', starting with a letter or digit"
            )
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidHeaderError(
                f"header name {name[:40]!r}... is {len(name)} characters long, over the "
                f"limit of {MAX_NAME_LENGTH}"
            )
        if is_reserved(name):
            raise InvalidHeaderError(
                f"header name {name!r} is reserved: names starting with {RESERVED_PREFIX!r} "
                "are Chicory's own; choose another name"
            )
        if type(value) is not str:
            raise InvalidHeaderError(
                f"header {name!r} must be a string, got {type(value).__name__}; convert it "
                "(headers are text metadata; pass data as task arguments)"
            )
        try:
            size += len(name) + len(value.encode())
        except UnicodeEncodeError:
            raise InvalidHeaderError(
                f"header {name!r} is not valid Unicode text (it holds a lone surrogate)"
            ) from None
        checked[name] = value
    if size > MAX_HEADERS_BYTES:
        raise InvalidHeaderError(
            f"headers take {size} bytes, over the limit of {MAX_HEADERS_BYTES}; keep headers "
            "to small metadata and pass data as task arguments"
        )
    return checked
