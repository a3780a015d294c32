"""Creating and upgrading the tables: ``chicory postgres migrate``, and ``?migrate=false``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anyio
import psycopg
import pytest
from psycopg import sql

from chicory.cli import main
from chicory.errors import ConfigurationError
from chicory_postgres.broker import PostgresBroker
from chicory_postgres.schema import CURRENT_VERSION


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema name of this test's own, dropped afterwards."""
    name = f"chicory_m_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_migrate_false_refuses_then_cli_migrates(
    postgres_url: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ?migrate=false a broker refuses an empty database and names the command; after
    ``chicory postgres migrate`` it connects, and migrating again changes nothing."""
    url = f"{postgres_url}?schema={schema}"
    with pytest.raises(ConfigurationError, match="chicory postgres migrate"):
        anyio.run(_publish_one, url)
    assert main(["postgres", "status", url]) == 1
    assert main(["postgres", "migrate", url]) == 0
    assert f"now at version {CURRENT_VERSION}" in capsys.readouterr().err
    assert main(["postgres", "migrate", url]) == 0
    assert "already" in capsys.readouterr().err
    assert main(["postgres", "status", url]) == 0
    assert anyio.run(_publish_one, url) == 1


async def _publish_one(url: str) -> int:
    async with PostgresBroker.from_url(url, migrate=False) as broker:
        await broker.publish("q", b"x")
        return (await broker.counts("q")).ready
