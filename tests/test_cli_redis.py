"""The admin commands end to end on Redis: a real worker process, the CLI in this process.

A bad night across two queues, seen with fresh worker counts, then every dead letter
replayed in one command and each task succeeding at its first attempt after the replay.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chicory.cli import main
from processes import delete_keys, worker_process

APP = "cli_app:app"


@pytest.fixture
def redis_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    monkeypatch.setenv("CHICORY_BROKER_URL", url)
    monkeypatch.setenv("CHICORY_TEST_OUTAGE", str(tmp_path / "outage"))
    try:
        yield url
    finally:
        delete_keys(prefix)


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    """``chicory ARGV`` in this process, with the app imported afresh (on Redis)."""
    monkeypatch.delitem(sys.modules, "cli_app", raising=False)
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> Any:
    code, out, err = run(monkeypatch, capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_bad_night_on_redis_found_and_replayed(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outage = tmp_path / "outage"
    outage.write_text("inf")
    with worker_process(
        redis_url,
        tmp_path / "runs.txt",
        "-q",
        "default",
        "-q",
        "billing",
        "--heartbeat-interval",
        "0.2",
        app=APP,
    ) as worker:
        for n in range(3):
            sent = run_json(
                monkeypatch, capsys, "send", APP, "shop.charge", "--args", f'["o-{n}", {n}]'
            )
            assert sent["queue"] == "billing"
        run_json(monkeypatch, capsys, "send", "--kwargs", '{"to": "a@b.c"}', APP, "shop.email")

        def dead() -> int:
            return sum(q["dead"] for q in run_json(monkeypatch, capsys, "queues", APP))

        until(lambda: dead() == 4)
        queues = {q["name"]: q for q in run_json(monkeypatch, capsys, "queues", APP)}
        assert (queues["billing"]["dead"], queues["default"]["dead"]) == (3, 1)
        assert queues["billing"]["consumers"] == 1, "the worker process consumes billing"

        (status,) = until(
            lambda: [w for w in run_json(monkeypatch, capsys, "workers", APP) if w["failed"] == 4]
        )
        assert status["pid"] == worker.process.pid
        assert sorted(status["queues"]) == ["billing", "default"]
        assert status["processed"] == 4 * 3  # three attempts each
        assert status["age"] < 5

        seen: list[str] = []
        cursor = None
        while True:
            extra = ["--cursor", cursor] if cursor else []
            page = run_json(monkeypatch, capsys, "dead", "list", APP, "--limit", "1", *extra)
            seen += [letter["id"] for letter in page["letters"]]
            for letter in page["letters"]:
                assert "ConnectionError: payment gateway down" in letter["traceback"]
            cursor = page["cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 4

        outage.write_text("0")
        code, out, err = run(monkeypatch, capsys, "dead", "replay", APP, "--all")
        assert code == 0, err
        task_ids = out.split()
        assert len(task_ids) == 4
        for task_id in task_ids:
            code, out, err = run(
                monkeypatch, capsys, "result", APP, task_id, "--wait", "--timeout", "20", "--json"
            )
            assert code == 0, err
            info = json.loads(out)
            assert (info["state"], info["attempt"]) == ("SUCCESS", 1)
        assert dead() == 0
