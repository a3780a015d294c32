"""URL parsing, options and password redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from chicory.errors import BrokerConnectionError, ConfigurationError
from chicory_redis.broker import RedisBroker
from chicory_redis.config import OPTIONS, RedisSettings, parse_settings
from chicory_redis.results import RedisResultBackend


def test_defaults_match_the_documented_ones() -> None:
    settings = parse_settings("redis://localhost")
    assert (settings.host, settings.port, settings.db) == ("localhost", 6379, 0)
    assert settings.key_prefix == "chicory"
    assert settings.lease_seconds == 30.0
    assert settings.reclaim_interval == 5.0
    assert settings.idle_consumer_ttl == 3600.0
    assert settings.block_ms == 1000
    assert settings.max_deliveries is None
    assert settings.result_ttl == 86400.0
    assert settings.effective_socket_timeout > settings.block_ms / 1000


def test_tcp_url_with_credentials_db_and_query_options() -> None:
    settings = parse_settings(
        "rediss://app:s3cr%3At@redis.example:6380/4?lease_seconds=60&max_deliveries=5"
        "&key_prefix=myapp&max_connections=7&idle_consumer_ttl=none"
    )
    assert settings.scheme == "rediss"
    assert (settings.host, settings.port, settings.db) == ("redis.example", 6380, 4)
    assert (settings.username, settings.password) == ("app", "s3cr:t")
    assert settings.lease_seconds == 60.0
    assert settings.max_deliveries == 5
    assert settings.key_prefix == "myapp"
    assert settings.max_connections == 7
    assert settings.idle_consumer_ttl is None
    kwargs = settings.connection_kwargs()
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["password"] == "s3cr:t"


def test_unix_socket_url() -> None:
    settings = parse_settings("unix:///var/run/redis.sock?db=2")
    assert settings.path == "/var/run/redis.sock"
    assert settings.db == 2
    assert settings.connection_kwargs()["path"] == "/var/run/redis.sock"


def test_keyword_options_override_the_query() -> None:
    settings = parse_settings("redis://h/0?lease_seconds=60", lease_seconds=5)
    assert settings.lease_seconds == 5.0


def test_password_never_appears_in_reprs_or_display_url() -> None:
    url = "redis://user:hunter2@localhost:6379/1"
    settings = parse_settings(url)
    broker = RedisBroker.from_url(url)
    backend = RedisResultBackend.from_url(url)
    for shown in (repr(settings), settings.display_url, repr(broker), repr(backend)):
        assert "hunter2" not in shown
    assert settings.display_url == "redis://user:***@localhost:6379/1"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://localhost?lease_secs=3", {}, "unknown option 'lease_secs'"),
        ("redis://localhost/zero", {}, "is not a number"),
        ("redis://localhost", {"lease_seconds": "soon"}, "not a valid number"),
        ("redis://localhost", {"lease_seconds": 0}, "must be positive"),
        ("redis://localhost?health_check_interval=-1", {}, "cannot be negative"),
        ("redis://localhost", {"key_prefix": "a{b}"}, "braces"),
        ("redis://localhost", {"block_ms": 5000, "socket_timeout": 5}, "must exceed"),
        ("redis://localhost", {"max_body_bytes": 2**30}, "512 MiB"),
        ("memcached://localhost", {}, "unsupported scheme"),
        ("unix://", {}, "socket path"),
    ],
)
def test_bad_settings_are_rejected_with_a_readable_error(
    url: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_settings(url, **options)


def test_errors_about_a_url_do_not_show_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings("redis://u:hunter2@localhost/0?nope=1")
    assert "hunter2" not in str(caught.value)


async def test_unreachable_server_raises_connection_error_without_password() -> None:
    broker = RedisBroker(
        RedisSettings(host="127.0.0.1", port=1, password="hunter2", socket_connect_timeout=0.5)
    )
    with pytest.raises(BrokerConnectionError) as caught:
        await broker.connect()
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_every_option_is_documented_with_its_default() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "redis.md").read_text()
    for name in OPTIONS:
        assert f"| `{name}` |" in docs, f"option {name!r} is missing from docs/redis.md"


NASTY = ["zq7/xv9", "zq7?xv9", "zq7#xv9", "zq7@xv9", "s3cr/t#?x@y", "12/34"]


@pytest.mark.parametrize("password", NASTY)
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{p}@localhost:6379/0",
        "redis://app:{p}@localhost/2?lease_seconds=3",
        "unix://:{p}@/tmp/redis.sock",
        "redis://localhost/0?password={p}",
        "redis://app:{p}@localhost/0?nope=1",
    ],
)
def test_a_password_with_reserved_characters_is_never_shown(template: str, password: str) -> None:
    """Unencoded '/', '?', '#' or '@' cut a URL in the wrong places: the error says to
    percent-encode, and shows the URL redacted, never a piece of the password."""
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(template.format(p=password))
    message = str(caught.value)
    assert password not in message
    for piece in password.replace("?", "/").replace("#", "/").replace("@", "/").split("/"):
        if len(piece) > 1:
            assert piece not in message
    assert "***" in message or "unknown option 'password'" in message


def test_a_percent_encoded_password_is_read() -> None:
    settings = parse_settings("redis://app:s3cr%2Ft%23%3Fx%40y@localhost/0")
    assert settings.password == "s3cr/t#?x@y"
    assert settings.display_url == "redis://app:***@localhost:6379/0"
