"""``chicory postgres migrate URL`` and ``chicory postgres status URL``.

Added to the ``chicory`` command line by :mod:`chicory_postgres.plugin`; psycopg is imported
only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def register(tree: Any) -> None:
    """Add the ``postgres`` command group to the CLI's ``tree``."""
    tree.group("postgres", "PostgreSQL broker: create or upgrade its tables, show their version")
    migrate = tree.action(
        "postgres",
        "migrate",
        "create or upgrade Chicory's tables in a PostgreSQL database (safe to run again, "
        "and from several machines at once)",
        _migrate,
    )
    status = tree.action(
        "postgres", "status", "show the schema version of a PostgreSQL database", _status
    )
    for parser in (migrate, status):
        parser.add_argument(
            "url",
            metavar="URL",
            help="the database, e.g. postgresql://user@host/db (?schema=NAME for another schema)",
        )


def _run(coro: Any) -> Any:
    import anyio

    return anyio.run(lambda: coro)


def _migrate(args: argparse.Namespace) -> int:
    return int(_run(_migrate_async(args.url)))


def _status(args: argparse.Namespace) -> int:
    return int(_run(_status_async(args.url)))


async def _migrate_async(url: str) -> int:
    import psycopg

    from chicory_postgres.config import parse_settings
    from chicory_postgres.connection import broker_errors
    from chicory_postgres.schema import CURRENT_VERSION, migrate

    settings = parse_settings(url)
    with broker_errors(settings, "migrating"):
        async with await psycopg.AsyncConnection.connect(
            settings.conninfo, autocommit=True
        ) as conn:
            applied = await migrate(conn, settings.schema)
    where = f"{settings.display_url} (schema {settings.schema})"
    if applied:
        done = ", ".join(str(v) for v in applied)
        print(
            f"applied migrations {done} to {where}; now at version {CURRENT_VERSION}",
            file=sys.stderr,
        )
    else:
        print(f"{where} is at version {CURRENT_VERSION} already", file=sys.stderr)
    return 0


async def _status_async(url: str) -> int:
    import psycopg

    from chicory_postgres.config import parse_settings
    from chicory_postgres.connection import broker_errors
    from chicory_postgres.schema import CURRENT_VERSION, current_version

    settings = parse_settings(url)
    with broker_errors(settings, "reading the schema version"):
        async with await psycopg.AsyncConnection.connect(
            settings.conninfo, autocommit=True
        ) as conn:
            version = await current_version(conn, settings.schema)
    print(version)
    if version != CURRENT_VERSION:
        print(
            f"{settings.display_url} (schema {settings.schema}) is at version {version}; this "
            f"release needs {CURRENT_VERSION}: run `chicory postgres migrate URL`",
            file=sys.stderr,
        )
        return 1
    return 0
