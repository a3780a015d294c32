"""Credentials never shown: URLs with passwords generated tools produce, in every place."""

from __future__ import annotations

import logging

import pytest

from chicory.redact import RedactingFormatter, redact_text, redact_url

# What password generators and secret stores hand out: every character that ends a part
# of a URL, percent signs, and the names of URL parts themselves.
PASSWORDS = [
    "hunter2",
    "pa/ss/word",
    "pa#ss#word",
    "pa?ss?word",
    "pa@ss@word",
    "p:a:ss",
    "a/b?c#d@e:f",
    "s3cr/t#?x@y",
    "%2Fenc%40oded",
    "@/?#",
    "password=x&token=y",
    "host:6379",
]
TEMPLATES = [
    "redis://:{p}@cache.internal:6379/0",
    "redis://app:{p}@cache.internal/1?lease_seconds=5",
    "rediss://app:{p}@cache.internal:6380/0?ssl_cert_reqs=none",
    "unix://:{p}@/run/redis.sock?db=2",
    "redis://cache.internal/0?password={p}",
    "redis://cache.internal/0?db=1&password={p}&key_prefix=app",
    "amqp://user:{p}@rabbit:5672//",
    "postgresql://user:{p}@db/app?sslmode=require",
    "https://api.example/hook?token={p}",
]


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_never_survives_redaction(template: str, password: str) -> None:
    url = template.format(p=password)
    shown = redact_url(url)
    assert password not in shown
    assert "***" in shown
    assert redact_url(shown) == shown  # redacting twice changes nothing
    in_text = redact_text(f"could not connect to {url}: refused (retrying)")
    assert password not in in_text
    assert in_text.endswith(": refused (retrying)")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:secret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("memory://?lease_seconds=5", "memory://?lease_seconds=5"),
        ("redis://host/0?client_name=a@b", "redis://host/0?client_name=a@b"),
        (
            "redis://host/0?key_prefix=app&ssl_keyfile=/k",
            "redis://host/0?key_prefix=app&ssl_keyfile=/k",
        ),
        ("redis://:pa/ss@host/0?password=x&db=1", "redis://:***@host/0?password=***&db=1"),
    ],
)
def test_what_is_not_a_secret_stays_readable(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_text_without_urls_is_unchanged() -> None:
    assert redact_text("no url here: a=b&password") == "no url here: a=b&password"


def test_the_log_formatter_redacts_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ConnectionError("lost redis://:pa/ss@h:1/0")
    except ConnectionError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "broker %s", ("redis://u:pa#ss@h/0",), True
        )
        import sys

        record.exc_info = sys.exc_info()
    out = formatter.format(record)
    assert "pa/ss" not in out
    assert "pa#ss" not in out
    assert "broker redis://u:***@h/0" in out
    assert "Traceback" in out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_command_lines_log_formats_redact(fmt: str) -> None:
    """``chicory --log-format text|json`` (and worker processes) log through these."""
    from chicory.logconfig import make_formatter

    record = logging.LogRecord(
        "chicory.worker", logging.WARNING, __file__, 1, "lost %s", ("redis://:zq7/xv9@h/0",), None
    )
    out = make_formatter(fmt).format(record)
    assert "zq7" not in out
    assert "redis://:***@h/0" in out
