"""``sqlite://`` URLs: where the database file is, and the options carried in the query.

The path follows SQLAlchemy's convention, so a URL a team already uses reads the same:

* ``sqlite:///queue.sqlite3`` -- ``queue.sqlite3`` relative to the working directory;
* ``sqlite:////var/lib/app/queue.sqlite3`` -- the absolute path ``/var/lib/app/queue.sqlite3``.

The broker and the result backend accept the same query options (an app gives its result
backend the broker's URL when no other is named): each takes the ones it uses and ignores
the other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from chicory.errors import ConfigurationError
from chicory.redact import redact_url
from chicory.urloptions import (
    Converter,
    convert_options,
    integer,
    number,
    optional_integer,
    optional_number,
)

__all__ = ["BROKER_OPTIONS", "CONNECTION_OPTIONS", "ConnectionOptions", "parse_sqlite_url"]


SYNCHRONOUS = ("normal", "full")

CONNECTION_OPTIONS: Mapping[str, Converter] = {
    "busy_timeout": number,
    "poll_interval": number,
    "synchronous": str,
}
"""Options of the database connection, taken by the broker and the result backend alike."""

BROKER_OPTIONS: Mapping[str, Converter] = {
    "lease_seconds": number,
    "max_deliveries": integer,
    "max_body_bytes": integer,
    "dead_letter_max_count": optional_integer,
    "dead_letter_max_age": optional_number,
}
"""Options only the broker uses (the result backend accepts and ignores them)."""


@attrs.frozen(kw_only=True)
class ConnectionOptions:
    """How a broker or result backend opens its database.

    Attributes:
        path: The database file.
        busy_timeout: Seconds a write waits for another process's write to finish before it
            fails (SQLite's ``busy_timeout``); the wait happens on the connection's thread,
            never on the event loop.
        poll_interval: Seconds between two looks at ``PRAGMA data_version`` while something
            waits for a change made by another process.
        synchronous: ``"normal"`` (a commit survives a crash of any process; the last
            commits may be lost on a power cut) or ``"full"`` (they survive that too, at the
            cost of an fsync per commit).
    """

    path: str
    busy_timeout: float = 5.0
    poll_interval: float = 0.01
    synchronous: str = "normal"

    def __attrs_post_init__(self) -> None:
        if not self.path or self.path == ":memory:" or self.path.startswith("file:"):
            raise ConfigurationError(
                "the sqlite broker needs a database file that its worker processes share; "
                "give one as sqlite:///relative/path or sqlite:////absolute/path "
                "(use memory:// for a queue inside one process)"
            )
        if not self.busy_timeout >= 0:
            raise ConfigurationError(f"busy_timeout must be >= 0 seconds, got {self.busy_timeout}")
        if not self.poll_interval > 0:
            raise ConfigurationError(
                f"poll_interval must be a positive number of seconds, got {self.poll_interval}"
            )
        if self.synchronous not in SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {self.synchronous!r}"
            )


def parse_sqlite_url(url: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Split a ``sqlite://`` URL into its path, its connection options and its broker options.

    Raises:
        ConfigurationError: not a ``sqlite://`` URL, a host given, no path, or an unknown or
            unparsable option.
    """
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"expected a sqlite:// URL, got {shown!r}")
    if parts.netloc:
        raise ConfigurationError(
            f"{shown!r} names a host ({parts.netloc!r}); a SQLite database is a local file: "
            "write sqlite:///relative/path or sqlite:////absolute/path"
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    options = convert_options(
        parse_qsl(parts.query, keep_blank_values=True),
        {**CONNECTION_OPTIONS, **BROKER_OPTIONS},
        url=shown,
        scheme="sqlite://",
    )
    connection = {k: v for k, v in options.items() if k in CONNECTION_OPTIONS}
    broker = {k: v for k, v in options.items() if k not in CONNECTION_OPTIONS}
    return path, connection, broker
