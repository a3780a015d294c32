"""Settings of the PostgreSQL broker and result backend: one URL plus options, parsed once.

URL forms (Chicory's options may also be given as query parameters, e.g. ``?lease_seconds=60``;
every other query parameter is a libpq connection parameter and goes to the server as is)::

    postgresql://[user[:password]@][host][:port][/dbname][?option=value&...]
    postgres://...                                  (the same)

Keyword options passed to ``from_url`` win over query parameters. Every option, its default
and what it costs is listed in ``docs/postgres.md``. The password is kept out of every
``repr``: use :attr:`PostgresSettings.display_url` in logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs

from chicory.errors import ConfigurationError
from chicory.redact import redact_url
from chicory.urloptions import (
    Converter,
    convert_options,
    flag,
    integer,
    number,
    optional_integer,
    optional_number,
    positive,
)

__all__ = ["OPTIONS", "PostgresSettings", "parse_settings"]

DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
"""Default body limit (PostgreSQL's own ``bytea`` limit is 1 GiB): a message row is read
whole by every claim, so large payloads belong in object storage, with their key in the
message."""

DEFAULT_DEAD_LETTER_MAX_COUNT: Final = 10_000
"""Dead letters kept per queue by default (as by the memory and Redis brokers)."""

DEFAULT_DEAD_LETTER_MAX_AGE: Final = 30 * 24 * 3600.0
"""Seconds a dead letter is kept by default: 30 days."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


OPTIONS: Final[Mapping[str, Converter]] = {
    "schema": str,
    "migrate": flag,
    "notify": flag,
    "poll_interval": number,
    "lease_seconds": number,
    "max_deliveries": optional_integer,
    "dead_letter_max_count": optional_integer,
    "dead_letter_max_age": optional_number,
    "max_body_bytes": integer,
    "result_ttl": number,
    "prune_interval": number,
    "pool_min_size": integer,
    "pool_max_size": integer,
    "pool_timeout": number,
    "prepare_threshold": optional_integer,
    "reconnect_backoff_max": number,
}
"""Every Chicory option ``parse_settings`` accepts, with its converter from a query value."""


def _schema_name(_instance: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if not _SCHEMA_NAME.match(value):
        raise ConfigurationError(
            f"schema {value!r} must be a lower-case SQL name of at most 40 characters "
            "(letters, digits and '_', not starting with a digit)"
        )


@attrs.frozen(kw_only=True)
class PostgresSettings:
    """Everything the PostgreSQL broker and result backend are configured with.

    Attributes:
        conninfo: The libpq connection URL (Chicory's options removed); holds the password,
            so it is never shown in ``repr``.
        schema: The PostgreSQL schema holding Chicory's tables (one deployment per schema).
        migrate: Create or upgrade the tables on first connect; with ``False`` a database
            that is not at the current schema version is refused with a message naming
            ``chicory postgres migrate``.
        notify: Wake consumers and result waiters with LISTEN/NOTIFY. Turn it off behind a
            pooler that cannot hold a LISTEN session (PgBouncer in transaction mode):
            consumers and waiters then poll every ``poll_interval``.
        poll_interval: Seconds between looks at the tables while nothing was notified (the
            only wake-up with ``notify=False``; a safety net otherwise).
        lease_seconds: How long a claimed message stays leased without renewal.
        max_deliveries: Dead-letter a message instead of delivering it a
            ``max_deliveries + 1``-th time; ``None`` for no limit.
        dead_letter_max_count: Dead letters kept per queue, oldest dropped first; ``None``
            keeps every one.
        dead_letter_max_age: Seconds a dead letter is kept; ``None`` keeps them.
        max_body_bytes: Largest body accepted by ``publish``.
        result_ttl: TTL (s) of result records stored with a non-positive ``ttl``.
        prune_interval: Seconds between deletions of expired result, heartbeat and
            revocation rows (done by whichever connected backend gets there first).
        pool_min_size: Connections the pool keeps open.
        pool_max_size: Most connections the pool opens.
        pool_timeout: Seconds to wait for a pooled connection.
        prepare_threshold: Executions after which psycopg prepares a statement on the
            server; ``None`` never prepares (needed behind PgBouncer before 1.21).
        reconnect_backoff_max: Longest pause (s) between reconnections of the LISTEN
            connection.
    """

    conninfo: str = attrs.field(default="postgresql://localhost/postgres", repr=False)
    schema: str = attrs.field(default="chicory", validator=_schema_name)
    migrate: bool = True
    notify: bool = True
    poll_interval: float = attrs.field(default=1.0, validator=positive)
    lease_seconds: float = attrs.field(default=30.0, validator=positive)
    max_deliveries: int | None = attrs.field(default=None, validator=positive)
    dead_letter_max_count: int | None = attrs.field(
        default=DEFAULT_DEAD_LETTER_MAX_COUNT, validator=positive
    )
    dead_letter_max_age: float | None = attrs.field(
        default=DEFAULT_DEAD_LETTER_MAX_AGE, validator=positive
    )
    max_body_bytes: int = attrs.field(default=DEFAULT_MAX_BODY_BYTES, validator=positive)
    result_ttl: float = attrs.field(default=86400.0, validator=positive)
    prune_interval: float = attrs.field(default=60.0, validator=positive)
    pool_min_size: int = attrs.field(default=1, validator=positive)
    pool_max_size: int = attrs.field(default=10, validator=positive)
    pool_timeout: float = attrs.field(default=30.0, validator=positive)
    prepare_threshold: int | None = 5
    reconnect_backoff_max: float = attrs.field(default=2.0, validator=positive)

    def __attrs_post_init__(self) -> None:
        if self.pool_min_size > self.pool_max_size:
            raise ConfigurationError(
                f"pool_min_size={self.pool_min_size} exceeds pool_max_size={self.pool_max_size}"
            )
        if self.max_body_bytes > 1024 * 1024 * 1024 - 1:
            raise ConfigurationError(
                f"max_body_bytes={self.max_body_bytes} exceeds PostgreSQL's 1 GiB bytea limit"
            )

    @property
    def display_url(self) -> str:
        """The server URL for logs and reprs, with the password replaced by ``***``."""
        return redact_url(self.conninfo)

    def channel(self, purpose: str) -> str:
        """The NOTIFY channel of this schema for ``purpose`` (``wake``, ``results``, ...)."""
        return f"{self.schema}_{purpose}"


def parse_settings(url: str, **options: Any) -> PostgresSettings:
    """Parse a ``postgresql://`` or ``postgres://`` URL and options into settings.

    Args:
        url: The server URL; Chicory's options may be query parameters, the others are
            passed to libpq.
        **options: Options overriding the query parameters (see :class:`PostgresSettings`).

    Raises:
        ConfigurationError: bad URL, unknown option or an invalid value. The message never
            contains the password.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse PostgreSQL URL {shown!r}: {exc}") from None
    if parts.scheme.lower() not in {"postgresql", "postgres"}:
        raise ConfigurationError(
            f"unsupported scheme in {shown!r}; use postgresql:// or postgres://"
        )
    ours: list[tuple[str, str]] = []
    libpq: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours if name in OPTIONS else libpq).append((name, value))
    fields: dict[str, Any] = {
        "conninfo": urlunsplit(
            ("postgresql", parts.netloc, parts.path, urlencode(libpq), parts.fragment)
        )
    }
    fields.update(
        convert_options([*ours, *options.items()], OPTIONS, url=shown, scheme="postgresql://")
    )
    return PostgresSettings(**fields)
