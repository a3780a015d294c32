"""How the ``chicory`` command sets up logging: a level and a format, on standard error.

Two formats:

* ``text`` (the default): one line per record, ``time level logger: message``, then the
  traceback if there is one. The worker's per-task lines carry their fields in the message
  (``task retrying: tasks.send_email[3f2a...] attempt=2 queue=emails worker=... in 4.00 s
  after SMTPServerDisconnected: ...``; see :mod:`chicory.worker.tasklog`).
* ``json``: one JSON object per line, written by python-json-logger (``pip install
  "chicory-core[json-logs]"``): ``time`` (ISO 8601, UTC), ``level``, ``logger``,
  ``message``, every field
  of the record's ``extra`` (the per-task lines' ``event``, ``task_name``, ``task_id``,
  ``attempt``, ``queue``, ``worker_id``...), and ``exc_info`` with the traceback.

Both formats pass their output through :func:`chicory.redact.redact_text`: no password of
a URL in a message, a field or a traceback reaches the log. An application that embeds a
worker configures logging itself; these functions are what the command line uses, and may
be called by such an application too.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Final, TextIO

from chicory.errors import ConfigurationError
from chicory.redact import RedactingFormatter, redact_text

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "configure_logging", "make_formatter"]

LOG_FORMATS: Final = ("text", "json")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JSON_HINT: Final = 'pip install "chicory-core[json-logs]"'


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (standard error), as text
    or JSON lines, replacing the root logger's handlers.

    Raises:
        ConfigurationError: an unknown level or format, or ``json`` without
            python-json-logger installed.
    """
    level = level.upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(f"unknown log level {level!r}; use one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``fmt`` (``text`` or ``json``), for a handler of your own.

    Raises:
        ConfigurationError: an unknown format, or ``json`` without python-json-logger.
    """
    if fmt == "text":
        return RedactingFormatter(TEXT_FORMAT)
    if fmt != "json":
        raise ConfigurationError(f"unknown log format {fmt!r}; use one of {', '.join(LOG_FORMATS)}")
    if importlib.util.find_spec("pythonjsonlogger") is None:
        raise ConfigurationError(f"--log-format json needs python-json-logger: {JSON_HINT}")
    from pythonjsonlogger.json import JsonFormatter

    class RedactingJsonFormatter(JsonFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return redact_text(super().format(record))

    return RedactingJsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
    )
