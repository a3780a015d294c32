"""Fault injection on the SQLite broker: two worker processes share one database file.

Workers run as real subprocesses (``chicory worker``) and one is killed with SIGKILL in the
middle of a batch; the other one, still running, must take over what the dead one held once
its leases lapse (at-least-once: nothing lost) or never run anything twice (at-most-once).
Results go through the SQLite result backend on the same file, so the producer here waits
on them across processes. Each worker writes its task events to a file of its own, so the
tests kill a worker while it runs tasks, and count exactly what ran where.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_scenarios import (
    kill_one_of_two_at_least_once,
    kill_one_of_two_at_most_once,
    long_task_runs_once,
)

pytestmark = pytest.mark.slow


def database_url(tmp_path: Path, lease_seconds: float = 1.0) -> str:
    """A database file of the test's own, with short leases."""
    return f"sqlite:///{tmp_path / 'queue.sqlite3'}?lease_seconds={lease_seconds}"


async def test_sigkill_mid_batch_loses_no_at_least_once_task(tmp_path: Path) -> None:
    await kill_one_of_two_at_least_once(database_url(tmp_path), tmp_path, finished=10)


async def test_sigkill_mid_batch_runs_no_at_most_once_task_twice(tmp_path: Path) -> None:
    await kill_one_of_two_at_most_once(database_url(tmp_path), tmp_path, finished=10)


async def test_task_longer_than_the_lease_runs_once_while_its_worker_lives(
    tmp_path: Path,
) -> None:
    await long_task_runs_once(database_url(tmp_path), tmp_path)
