"""Settings of the Redis broker and result backend: one URL plus options, parsed once.

URL forms (options may also be given as query parameters, e.g. ``?lease_seconds=60``)::

    redis://[[username]:password@]host[:port][/db]
    rediss://[[username]:password@]host[:port][/db]      (TLS)
    unix://[[username]:password@]/path/to/redis.sock[?db=N]

Keyword options passed to ``from_url`` win over query parameters. Every option, its default
and what it costs is listed in ``docs/redis.md``. The password is kept out of every ``repr``:
use :attr:`RedisSettings.display_url` in logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from chicory.errors import ConfigurationError
from chicory.redact import redact_url
from chicory.urloptions import (
    Converter,
    convert_options,
    flag,
    integer,
    not_negative,
    number,
    optional_integer,
    optional_number,
    optional_text,
    positive,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OPTIONS", "RedisSettings", "parse_settings"]

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""Default body limit: far below Redis's own 512 MiB bulk-string limit, to protect memory."""

REDIS_MAX_BODY_BYTES: Final = 512 * 1024 * 1024

DEFAULT_DEAD_LETTER_MAX_COUNT: Final = 10_000
"""Dead letters kept per queue by default (as by the memory broker)."""

DEFAULT_DEAD_LETTER_MAX_AGE: Final = 30 * 24 * 3600.0
"""Seconds a dead letter is kept by default: 30 days (as by the memory broker)."""


OPTIONS: Final[Mapping[str, Converter]] = {
    "db": integer,
    "key_prefix": str,
    "lease_seconds": number,
    "reclaim_interval": number,
    "idle_consumer_ttl": optional_number,
    "block_ms": integer,
    "delayed_poll_interval": number,
    "max_deliveries": optional_integer,
    "dead_letter_max_count": optional_integer,
    "dead_letter_max_age": optional_number,
    "max_body_bytes": integer,
    "result_ttl": number,
    "max_connections": integer,
    "pool_timeout": number,
    "socket_timeout": optional_number,
    "socket_connect_timeout": number,
    "health_check_interval": integer,
    "reconnect_backoff": number,
    "reconnect_backoff_max": number,
    "reconnect_timeout": number,
    "client_name": optional_text,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": optional_text,
    "ssl_certfile": optional_text,
    "ssl_keyfile": optional_text,
    "ssl_check_hostname": flag,
}
"""Every option ``parse_settings`` accepts, with its converter from a query-string value."""


@attrs.frozen(kw_only=True)
class RedisSettings:
    """Everything the Redis broker and result backend are configured with.

    Attributes:
        scheme: ``redis``, ``rediss`` (TLS) or ``unix``.
        host: Server host (TCP schemes).
        port: Server port (TCP schemes).
        path: Socket path (``unix``).
        db: Database number.
        username: ACL user name, if any.
        password: Password, if any (never shown in ``repr``).
        key_prefix: First part of every key Chicory writes (no braces allowed).
        lease_seconds: Idle time after which another consumer may reclaim a delivery.
        reclaim_interval: How often a consumer looks for dead consumers' entries.
        idle_consumer_ttl: Seconds after which a member of a queue's consumer group with
            nothing pending and no entry read or claimed since is deleted from the group by
            a live consumer (the names killed workers leave behind); ``None`` keeps them.
        block_ms: Longest single ``XREADGROUP BLOCK`` in milliseconds.
        delayed_poll_interval: How often a consumer moves due delayed messages (at most
            this late).
        max_deliveries: Dead-letter a message instead of delivering it a
            ``max_deliveries + 1``-th time; ``None`` for no limit.
        dead_letter_max_count: Dead letters kept per queue, the oldest dropped first;
            ``None`` keeps every one.
        dead_letter_max_age: Seconds a dead letter is kept (by the server's clock); ``None``
            keeps them however old.
        max_body_bytes: Largest body accepted by ``publish``.
        result_ttl: TTL (s) of result records stored with a non-positive ``ttl``.
        max_connections: Size of the connection pool.
        pool_timeout: Seconds to wait for a free pooled connection.
        socket_timeout: Read timeout (s); must exceed ``block_ms`` (derived when ``None``).
        socket_connect_timeout: Connect timeout (s).
        health_check_interval: Seconds after which an idle connection is checked with PING
            (the result listener pings after this long without a byte, and reconnects when
            no reply comes within as long again; ``0`` turns both off).
        reconnect_backoff: First pause (s) after a dropped connection.
        reconnect_backoff_max: Longest pause (s) between reconnection attempts.
        reconnect_timeout: How long (s) a publish whose message certainly did not reach
            Redis keeps reconnecting before it fails; ``0`` fails at once.
        client_name: ``CLIENT SETNAME`` of every connection (visible in ``CLIENT LIST``).
        ssl_cert_reqs: ``required``, ``optional`` or ``none`` (``rediss`` only).
        ssl_ca_certs: CA bundle path (``rediss`` only).
        ssl_certfile: Client certificate path (``rediss`` only).
        ssl_keyfile: Client key path (``rediss`` only).
        ssl_check_hostname: Verify the server host name (``rediss`` only).
    """

    scheme: str = "redis"
    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    key_prefix: str = "chicory"
    lease_seconds: float = attrs.field(default=30.0, validator=positive)
    reclaim_interval: float = attrs.field(default=5.0, validator=positive)
    idle_consumer_ttl: float | None = attrs.field(default=3600.0, validator=positive)
    block_ms: int = attrs.field(default=1000, validator=positive)
    delayed_poll_interval: float = attrs.field(default=0.5, validator=positive)
    max_deliveries: int | None = attrs.field(default=None, validator=positive)
    dead_letter_max_count: int | None = attrs.field(
        default=DEFAULT_DEAD_LETTER_MAX_COUNT, validator=positive
    )
    dead_letter_max_age: float | None = attrs.field(
        default=DEFAULT_DEAD_LETTER_MAX_AGE, validator=positive
    )
    max_body_bytes: int = attrs.field(default=DEFAULT_MAX_BODY_BYTES, validator=positive)
    result_ttl: float = attrs.field(default=86400.0, validator=positive)
    max_connections: int = attrs.field(default=50, validator=positive)
    pool_timeout: float = attrs.field(default=20.0, validator=positive)
    socket_timeout: float | None = attrs.field(default=None, validator=positive)
    socket_connect_timeout: float = attrs.field(default=5.0, validator=positive)
    health_check_interval: int = attrs.field(default=30, validator=not_negative)
    reconnect_backoff: float = attrs.field(default=0.1, validator=positive)
    reconnect_backoff_max: float = attrs.field(default=1.0, validator=positive)
    reconnect_timeout: float = attrs.field(default=5.0, validator=not_negative)
    client_name: str | None = "chicory"
    ssl_cert_reqs: str = "required"
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    def __attrs_post_init__(self) -> None:
        if self.scheme not in {"redis", "rediss", "unix"}:
            raise ConfigurationError(
                f"unsupported scheme {self.scheme!r}; use redis://, rediss:// or unix://"
            )
        if "{" in self.key_prefix or "}" in self.key_prefix or not self.key_prefix:
            raise ConfigurationError(
                f"key_prefix {self.key_prefix!r} must be non-empty and contain no braces "
                "(braces would break the per-queue Redis Cluster hash tags)"
            )
        if self.max_body_bytes > REDIS_MAX_BODY_BYTES:
            raise ConfigurationError(
                f"max_body_bytes={self.max_body_bytes} exceeds Redis's 512 MiB value limit"
            )
        if self.socket_timeout is not None and self.socket_timeout <= self.block_ms / 1000 + 1:
            raise ConfigurationError(
                f"socket_timeout={self.socket_timeout} s must exceed block_ms={self.block_ms} "
                "ms by more than a second, or blocking reads would time out the socket"
            )
        if self.ssl_cert_reqs not in {"required", "optional", "none"}:
            raise ConfigurationError(
                f"ssl_cert_reqs must be 'required', 'optional' or 'none', "
                f"got {self.ssl_cert_reqs!r}"
            )

    @property
    def effective_socket_timeout(self) -> float:
        """The read timeout used: ``socket_timeout``, or ``block_ms`` plus 10 s."""
        if self.socket_timeout is not None:
            return self.socket_timeout
        return self.block_ms / 1000 + 10.0

    @property
    def display_url(self) -> str:
        """The URL for logs and reprs, with the password replaced by ``***``."""
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}{':***' if self.password else ''}@"
        if self.scheme == "unix":
            return redact_url(f"unix://{auth}{self.path}?db={self.db}")
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def dead_letter_limits(self) -> tuple[str, str]:
        """The dead-letter limits as script arguments: count and age in ms, ``""`` for none."""
        count = "" if self.dead_letter_max_count is None else str(self.dead_letter_max_count)
        age = self.dead_letter_max_age
        return count, "" if age is None else str(max(1, int(age * 1000)))

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a ``redis.asyncio`` connection pool (no connection class)."""
        kwargs: dict[str, Any] = {
            "db": self.db,
            "username": self.username,
            "password": self.password,
            "socket_timeout": self.effective_socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "health_check_interval": self.health_check_interval,
            "client_name": self.client_name,
        }
        if self.scheme == "unix":
            kwargs["path"] = self.path
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        if self.scheme == "rediss":
            kwargs.update(
                ssl_cert_reqs=self.ssl_cert_reqs,
                ssl_ca_certs=self.ssl_ca_certs,
                ssl_certfile=self.ssl_certfile,
                ssl_keyfile=self.ssl_keyfile,
                ssl_check_hostname=self.ssl_check_hostname,
            )
        return kwargs


def _unencoded_userinfo(url: str) -> bool:
    """Whether a password seems to hold a character that ends the user info of a URL.

    ``redis://user:pa/ss@host`` reads as host ``user``, port ``pa`` and path ``/ss@host``:
    the ``@`` that ends the user info lies beyond the first ``/``, ``?`` or ``#``, and what
    comes before that is no ``host[:port]``.
    """
    scheme_end = url.find("://")
    if scheme_end < 0:
        return False
    rest = url[scheme_end + 3 :]
    at = rest.rfind("@")
    if at < 0:
        return False
    head = rest[:at]
    if "@" in head:
        return True
    cuts = [i for i in (head.find(c) for c in "/?#") if i >= 0]
    if not cuts:
        return False
    authority = head[: min(cuts)]
    if ":" not in authority:
        return False  # the '@' is in the path or query (a client_name, say)
    if url[:scheme_end].lower() == "unix":
        return True  # no host, no port: a ':' can only start a password
    port = authority.rsplit(":", 1)[1]
    return not port.isdigit()


def _credentials_hint(name: str) -> str:
    if name.lower() in {"password", "pass", "username", "user"}:
        return "credentials go in the URL's user info: redis://user:password@host"
    return ""


def parse_settings(url: str, **options: Any) -> RedisSettings:
    """Parse a ``redis://``, ``rediss://`` or ``unix://`` URL and options into settings.

    Args:
        url: The server URL; query parameters are options.
        **options: Options overriding the query parameters (see :class:`RedisSettings`).

    Raises:
        ConfigurationError: bad URL, unknown option or an invalid value. The message never
            contains the password.
    """
    shown = redact_url(url)
    if _unencoded_userinfo(url):
        raise ConfigurationError(
            f"the user name or password in {shown} holds a '/', '?', '#' or '@' that is not "
            "percent-encoded, so the URL cannot be read; encode them (urllib.parse.quote("
            "password, safe='') turns '/' into %2F, '?' into %3F, '#' into %23, '@' into %40)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse Redis URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    fields: dict[str, Any] = {"scheme": scheme}
    if parts.username:
        fields["username"] = unquote(parts.username)
    if parts.password:
        fields["password"] = unquote(parts.password)
    if scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"{shown!r} names no socket path (unix:///path/redis.sock)")
        fields["path"] = unquote(parts.path)
    elif scheme in {"redis", "rediss"}:
        fields["host"] = unquote(parts.hostname or "localhost")
        fields["port"] = port or 6379
        db_text = parts.path.strip("/")
        if db_text:
            try:
                fields["db"] = int(db_text)
            except ValueError:
                what = f"database {db_text!r}" if "@" not in db_text else "the database"
                raise ConfigurationError(
                    f"{what} in {shown!r} is not a number (a '/' in a password must be "
                    "percent-encoded as %2F)"
                ) from None
    queried = parse_qsl(parts.query, keep_blank_values=True)
    fields.update(
        convert_options(
            [*queried, *options.items()],
            OPTIONS,
            url=shown,
            scheme="redis://",
            hint=_credentials_hint,
        )
    )
    try:
        return RedisSettings(**fields)
    except TypeError as exc:
        raise ConfigurationError(f"invalid Redis settings for {shown}: {exc}") from None
