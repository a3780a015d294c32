"""The conformance harnesses: every test gets a database file of its own in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from chicory.broker import Broker
from chicory.testing import BrokerHarness, ResultBackendHarness
from chicory_sqlite.broker import SqliteBroker
from chicory_sqlite.results import SqliteResultBackend


@pytest.fixture
def database(tmp_path: Path) -> str:
    """The path of this test's database file."""
    return str(tmp_path / "queue.sqlite3")


@pytest.fixture
def chicory_broker_harness(database: str) -> BrokerHarness:
    """The SQLite broker on the test's file, with the SQLite result backend beside it (the
    worker suite's results go through the same file)."""

    def factory(*, lease_seconds: float, max_deliveries: int | None) -> Broker:
        return SqliteBroker(database, lease_seconds=lease_seconds, max_deliveries=max_deliveries)

    def limited(*, max_count: int, max_age: float) -> Broker:
        return SqliteBroker(database, dead_letter_max_count=max_count, dead_letter_max_age=max_age)

    return BrokerHarness(
        factory=factory,
        dead_letter_limits=limited,
        result_backend=lambda: SqliteResultBackend(database),
        name="sqlite",
    )


@pytest.fixture
def chicory_result_backend_harness(database: str) -> ResultBackendHarness:
    """The SQLite result backend on the test's file."""
    return ResultBackendHarness(factory=lambda: SqliteResultBackend(database), name="sqlite")
