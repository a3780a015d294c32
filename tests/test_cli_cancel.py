"""``chicory cancel`` and ``chicory delayed list|remove`` on Redis, and in-process on memory://.

On Redis a worker process runs the app; the CLI runs in this process, like an operator's shell.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chicory import Chicory
from chicory.admin import Admin
from chicory.cli import main
from chicory.errors import CapabilityError
from chicory.records import TaskState
from processes import delete_keys, worker_process

APP = "cli_app:app"


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    monkeypatch.setenv("CHICORY_BROKER_URL", url)
    try:
        yield url
    finally:
        delete_keys(prefix)


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    monkeypatch.delitem(sys.modules, "cli_app", raising=False)
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> Any:
    code, out, err = run(monkeypatch, capsys, *argv, "--json")
    assert code in (0, 1), err
    return json.loads(out)


@pytest.mark.slow
def test_delayed_tasks_are_listed_removed_and_cancelled(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = []
    for n in range(3):
        code, out, _ = run(
            monkeypatch,
            capsys,
            "send",
            APP,
            "shop.email",
            "--args",
            f'["u{n}"]',
            "--countdown",
            str(3600 + n),
        )
        assert code == 0
        ids.append(out.strip())
    listed = run_json(monkeypatch, capsys, "delayed", "list", APP)
    assert [t["task_id"] for t in listed["tasks"]] == ids  # soonest first
    assert {t["task"] for t in listed["tasks"]} == {"shop.email"}
    first = listed["tasks"][0]
    removed = run_json(monkeypatch, capsys, "delayed", "remove", APP, first["id"])
    assert removed["removed"] == {first["id"]: True}
    code, _, err = run(monkeypatch, capsys, "delayed", "remove", APP, first["id"])
    assert code == 1
    assert "not delayed" in err
    report = run_json(monkeypatch, capsys, "cancel", APP, ids[1])
    assert report["state"] == "CANCELLED"
    assert report["removed"] == [f"default/{listed['tasks'][1]['id']}"]
    left = run_json(monkeypatch, capsys, "delayed", "list", APP)
    assert [t["task_id"] for t in left["tasks"]] == [ids[2]]
    code, out, _ = run(monkeypatch, capsys, "result", APP, ids[1])
    assert code == 1  # cancelled is not a success
    assert "CANCELLED" in out


@pytest.mark.slow
def test_chicory_cancel_stops_a_queued_task_in_a_worker_process(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(monkeypatch, capsys, "send", APP, "shop.email", "--args", '["late"]')
    task_id = out.strip()
    report = run_json(monkeypatch, capsys, "cancel", APP, task_id)
    assert report["revoked"] is True
    assert report["removed"] == []  # it was ready, not delayed: the workers will skip it
    with worker_process(redis_url, tmp_path / "runs.txt", app=APP) as worker:
        deadline = time.monotonic() + 30
        while True:
            info = run_json(monkeypatch, capsys, "result", APP, task_id)
            if info["state"] == "CANCELLED" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    assert info["state"] == "CANCELLED"
    assert "cancelled before it started" in worker.output()


async def test_the_admin_layer_says_when_a_broker_cannot_list_delayed_tasks() -> None:
    app = Chicory("memory://")
    admin = Admin(app)
    assert (await admin.delayed("default")).tasks == []

    class NoListing:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        @property
        def capabilities(self) -> Any:
            import attrs

            return attrs.evolve(self._inner.capabilities, delayed_listing=False)

    plain = Chicory(NoListing(app.broker))  # type: ignore[arg-type]
    with pytest.raises(CapabilityError, match="delayed_listing"):
        await Admin(plain).delayed("default")
    report = await Admin(plain).cancel("some-task")
    assert report.revoked
    assert report.state is TaskState.PENDING
    await app.close()
