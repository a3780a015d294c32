"""``chicory schedules``, ``chicory scheduler`` and ``chicory worker --scheduler`` on Redis.

Two ``chicory scheduler`` processes fire the same 1-second schedule at once; every fire is
enqueued once. ``chicory worker --processes 2 --scheduler`` runs one scheduler, in its
supervisor, which keeps firing while its children are killed and replaced. The listing
shows each schedule's last and next fire, in a table and as JSON.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from chicory import Chicory
from chicory.cli import main
from processes import delete_keys, worker_process

TESTS = Path(__file__).resolve().parent
APP = "sched_app:app"


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    monkeypatch.setenv("CHICORY_BROKER_URL", url)
    try:
        yield url
    finally:
        delete_keys(prefix)


def listing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.delitem(sys.modules, "sched_app", raising=False)
    code = main(["schedules", APP, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return {row["name"]: row for row in json.loads(captured.out)}


@contextmanager
def chicory(url: str, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    """``chicory ARGV`` in a process of its own, stopped (SIGTERM, then by pid) at the end."""
    env = {
        **os.environ,
        "CHICORY_BROKER_URL": url,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "chicory", *argv], env=env, cwd=TESTS, stderr=subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


async def fire_ids(url: str) -> list[str]:
    """The task ids of every message waiting in the default queue (consumed and acked)."""
    app = Chicory(url, load_entry_points=True)
    ids = []
    async with app, app.broker.consume(["default"], prefetch=1000) as consumer:
        while batch := await consumer.fetch(1000, timeout=0.5):
            ids += [json.loads(delivery.body)["id"] for delivery in batch]
            await consumer.ack_many(batch)
    return ids


def ready(url: str) -> int:
    async def count() -> int:
        app = Chicory(url, load_entry_points=True)
        async with app:
            return (await app.broker.counts("default")).ready

    return anyio.run(count)


def test_the_listing_names_each_schedule_with_its_next_fire(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = listing(monkeypatch, capsys)
    assert sorted(rows) == ["nightly", "tick"]
    nightly = rows["nightly"]
    assert nightly["when"] == "cron 0 2 * * * (Europe/Paris)"
    assert nightly["task"] == "sched.echo"
    assert nightly["queue"] == "default"
    assert nightly["missed"] == "catch_up_last"
    assert nightly["last_fire"] is None
    assert nightly["last_state"] is None
    assert datetime.fromisoformat(nightly["next_fire"]).tzinfo is not None
    monkeypatch.delitem(sys.modules, "sched_app", raising=False)
    assert main(["schedules", APP]) == 0
    table = capsys.readouterr()
    assert "nightly" in table.out
    assert "never" in table.out
    assert "2 schedule(s)" in table.err


def test_two_scheduler_processes_enqueue_each_fire_once(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        chicory(redis_url, "scheduler", APP, "--schedule", "tick", "--poll", "0.1") as one,
        chicory(redis_url, "scheduler", APP, "-s", "tick", "--poll", "0.1") as two,
    ):
        until(lambda: ready(redis_url) >= 4)
        for process in (one, two):
            process.send_signal(signal.SIGTERM)
        for process in (one, two):
            assert process.wait(20) == 0, process.stderr.read() if process.stderr else ""
    ids = anyio.run(fire_ids, redis_url)
    assert len(ids) >= 4
    assert len(set(ids)) == len(ids), f"a fire was enqueued twice: {sorted(ids)}"
    assert all(i.startswith("tick@") and i.endswith("Z") for i in ids), ids
    last = listing(monkeypatch, capsys)["tick"]
    assert last["last_task_id"] == max(ids)


def test_a_worker_with_scheduler_fires_and_runs(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with chicory(redis_url, "worker", APP, "--scheduler", "--heartbeat-interval", "0.5"):
        row = until(lambda: listing(monkeypatch, capsys)["tick"]["last_task_id"])

        async def result() -> Any:
            app = Chicory(redis_url, load_entry_points=True)
            async with app:
                return await app.backend.wait(row, 20)

        assert b"tick" in anyio.run(result)
        assert listing(monkeypatch, capsys)["tick"]["last_state"] in ("PENDING", "SUCCESS")


def test_the_scheduler_refuses_what_cannot_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHICORY_BROKER_URL", "redis://127.0.0.1:6379/0?key_prefix=t-never")
    assert main(["scheduler", APP, "--schedule", "hourly"]) == 2
    assert "no schedule named 'hourly'" in capsys.readouterr().err
    assert main(["schedules", "cli_app:app"]) == 2
    assert "declares no schedules" in capsys.readouterr().err


FIRED = re.compile(r"schedule tick: fired sched\.echo as task (tick@\S+)")


def test_a_supervisor_runs_one_scheduler_whatever_its_children_do(
    redis_url: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"

    def fired() -> list[str]:
        return FIRED.findall(supervisor.output())

    def ran() -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        if runs.exists():
            for line in runs.read_text().splitlines():
                task_id, _, pid = line.partition(" ")
                found.setdefault(task_id, set()).add(int(pid))
        return found

    with worker_process(
        redis_url, runs, "--processes", "2", "--scheduler", "-c", "2", app=APP
    ) as supervisor:
        until(lambda: len(ran()) >= 2, timeout=60)
        victims = set().union(*ran().values())
        assert supervisor.process.pid not in victims  # the supervisor runs no task itself
        before = len(fired())
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        until(lambda: supervisor.output().count("was killed by SIGKILL") == len(victims))
        until(lambda: len(fired()) >= before + 3, timeout=60)  # firing went on

        def run_by_replacements() -> bool:
            later = [ran().get(task_id, set()) for task_id in fired()[before:]]
            return sum(1 for pids in later if pids and not pids & victims) >= 2

        until(run_by_replacements, timeout=60)
        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0, supervisor.output()
    output = supervisor.output()
    assert output.count("scheduler started") == 1, output
    assert "scheduler stopped" in output
    ids = fired()
    assert len(set(ids)) == len(ids), f"a fire was enqueued twice: {sorted(ids)}"
    assert set(ran()) <= set(ids)
