"""Keep credentials out of logs, reprs, error messages and command output.

Chicory shows a URL only through :func:`redact_url`, and the ``chicory`` command line also
passes every line it prints or logs through :func:`redact_text`, which redacts each URL it
finds in free text (an error message of a library, a traceback).

Redaction does not trust the URL to be well formed. Generated passwords often hold ``/``,
``#``, ``?`` or ``@``, which a URL parser reads as the start of the path, fragment or query,
or as the end of the user info, so a parser would show what follows them. Here, when a URL
has an ``@`` after its scheme, everything between the first ``:`` of the user info and the
*last* ``@`` is the password; query parameters that name a secret (``password=``,
``token=``, ...) are redacted too. When in doubt, more is hidden, not less.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["RedactingFormatter", "redact_text", "redact_url"]

MASK: Final = "***"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|credential|^auth$|^key$|^api_?key$|^sig(nature)?$", re.IGNORECASE
)
_PARAM = re.compile(r"([?&;])([^=&#;]*)=")
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.\-]*://[^\s'"<>`]*""")


def redact_url(url: str) -> str:
    """Return ``url`` with any password and secret query parameter replaced by ``***``.

    >>> redact_url("redis://user:secret@host:6379/0")
    'redis://user:***@host:6379/0'
    >>> redact_url("redis://:pa/ss#wo?rd@host/0?password=x&db=1")
    'redis://:***@host/0?password=***&db=1'
    """
    match = _SCHEME.match(url)
    if match is None:
        return _redact_query(url) if "=" in url else url
    head, rest = url[: match.end()], url[match.end() :]
    at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        colon = userinfo.find(":")
        if colon >= 0 and not any(c in userinfo[:colon] for c in "/?#"):
            rest = f"{userinfo[:colon]}:{MASK}@{rest[at + 1 :]}"
    return head + _redact_query(rest)


def _redact_query(text: str) -> str:
    """Hide the values of query parameters that name a secret.

    A secret value runs to the next ``&`` or ``;`` that starts another ``name=``
    parameter, or to the end: a ``#``, ``&`` or ``;`` inside a password is hidden with it.
    """
    out: list[str] = []
    position = 0
    for param in _PARAM.finditer(text):
        if param.start() < position or not _SECRET_NAME.search(param.group(2)):
            continue
        end = len(text)
        for following in _PARAM.finditer(text, param.end()):
            if following.group(1) != "?":
                end = following.start()
                break
        out += (text[position : param.end()], MASK)
        position = end
    return "".join(out) + text[position:] if out else text


def redact_text(text: str) -> str:
    """Return ``text`` with every URL in it passed through :func:`redact_url`."""
    if "://" not in text:
        return text

    def redact(found: re.Match[str]) -> str:
        url = found.group(0)
        bare = url.rstrip(":,.;)")  # punctuation of the sentence around the URL
        return redact_url(bare) + url[len(bare) :]

    return _URL_IN_TEXT.sub(redact, text)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose output (message and traceback) has its URLs redacted.

    The ``chicory`` command line logs through it; use it in your own logging set-up to get
    the same protection for URLs that third-party messages may carry.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as the base class does, then redact every URL in it."""
        return redact_text(super().format(record))
