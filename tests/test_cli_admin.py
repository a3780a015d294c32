"""The admin commands end to end on memory://, in-process: ``chicory`` runs here, against the
same app (``cli_app:app``) whose worker runs here between commands.

What an operator meets after a bad night: failures across two queues, found, filtered,
paged, shown with their traceback, replayed with a fresh retry budget, deleted, purged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import cli_app
import pytest

from chicory import Worker
from chicory.admin import Admin
from chicory.cli import build_tree, main
from chicory.cli.parsing import Formatter
from e2e_support import eventually

APP = "cli_app:app"


@pytest.fixture
def outage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The outage file of ``cli_app``, and a clean memory broker and backend around the test."""
    path = tmp_path / "outage"
    monkeypatch.setenv("CHICORY_TEST_OUTAGE", str(path))
    yield path
    anyio.run(_purge)


async def _purge() -> None:
    async with cli_app.app as app:
        admin = Admin(app)
        await admin.purge()
        for name in await admin.queue_names():
            counts = await app.broker.counts(name)
            assert counts.ready == counts.in_flight == 0, f"{name} not drained: {counts}"


def work_until(done: Callable[[Admin], Any], timeout: float = 20) -> None:
    """Run a worker on both queues until ``await done(admin)`` is true."""

    async def run() -> None:
        async with cli_app.app as app:
            admin = Admin(app)
            worker = Worker(app, queues=["default", "billing"], concurrency=4)
            async with anyio.create_task_group() as group:
                group.start_soon(worker.serve)
                await eventually(lambda: done(admin), timeout)
                worker.stop()

    anyio.run(run)


def dead_count(expected: int) -> Callable[[Admin], Any]:
    async def check(admin: Admin) -> bool:
        return sum(q.dead for q in await admin.queues()) == expected

    return check


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``chicory ARGV``; return the exit code, standard output and standard error."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def a_bad_night(outage: Path) -> None:
    """Three charges (queue billing) and two emails (default) fail for good."""
    cli_app.set_outage(outage, None)

    async def send() -> None:
        async with cli_app.app:
            for n in range(3):
                await cli_app.charge.delay(f"order-{n}", 10.0 + n)
            for n in range(2):
                await cli_app.email.delay(f"user{n}@example.com")

    anyio.run(send)
    work_until(dead_count(5))


def test_dead_list_spans_queues_with_task_names_ids_and_tracebacks(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    listing = cli_json(capsys, "dead", "list", APP)
    letters = listing["letters"]
    assert listing["cursor"] is None
    assert sorted(letter["queue"] for letter in letters) == ["billing"] * 3 + ["default"] * 2
    assert {letter["task"] for letter in letters} == {"shop.charge", "shop.email"}
    assert all(len(letter["task_id"]) == 32 for letter in letters)
    times = [letter["dead_at"] for letter in letters]
    assert times == sorted(times), "merged across queues oldest first"
    for letter in letters:
        assert letter["reason"].startswith("ConnectionError: payment gateway down")
        assert "retries exhausted after 3 attempts" in letter["reason"]
        assert "Traceback (most recent call last)" in letter["traceback"]
        assert 'raise ConnectionError("payment gateway down")' in letter["traceback"]
        assert [entry["event"] for entry in letter["history"]] == ["retry", "retry"]
    charge = next(letter for letter in letters if letter["task"] == "shop.charge")
    assert charge["args"] in (["order-0", 10.0], ["order-1", 11.0], ["order-2", 12.0])

    code, out, err = cli(capsys, "dead", "list", APP)  # the human table: summary on stderr
    assert code == 0
    assert out.splitlines()[0].split("\t") == [
        "ID", "QUEUE", "DEAD AT", "TASK", "TASK ID", "REASON", "TRACEBACK"
    ]  # fmt: skip
    assert len(out.splitlines()) == 6
    assert "shop.charge" in out
    assert "ConnectionError: payment gateway down" in out
    assert "dead letter(s)" not in out
    assert "5 dead letter(s) from 2 queue(s)" in err


def test_options_before_or_after_positionals_and_filters(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    after = cli_json(capsys, "dead", "list", APP, "-q", "billing")
    before = cli_json(capsys, "dead", "list", "-q", "billing", APP)
    assert [letter["id"] for letter in after["letters"]] == [
        letter["id"] for letter in before["letters"]
    ]
    assert len(after["letters"]) == 3
    by_task = cli_json(capsys, "dead", "list", APP, "--task", "shop.e*")
    assert {letter["task"] for letter in by_task["letters"]} == {"shop.email"}
    assert len(by_task["letters"]) == 2
    one = by_task["letters"][0]
    by_id = cli_json(capsys, "dead", "list", APP, "--task-id", one["task_id"])
    assert [letter["id"] for letter in by_id["letters"]] == [one["id"]]
    assert len(cli_json(capsys, "dead", "list", APP, "--reason", "GATEWAY DOWN")["letters"]) == 5
    assert cli_json(capsys, "dead", "list", APP, "--reason", "disk full")["letters"] == []
    assert cli_json(capsys, "dead", "list", APP, "--since", "2099-01-01")["letters"] == []
    assert cli_json(capsys, "dead", "list", APP, "--until", "1h")["letters"] == []
    assert len(cli_json(capsys, "dead", "list", APP, "--since", "1h")["letters"]) == 5

    code, out, err = cli(capsys, "dead", "show", APP, "--json", one["id"])
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["task"], shown["task_id"], shown["queue"]) == (
        "shop.email",
        one["task_id"],
        "default",
    )
    assert shown["kwargs"] == {}
    assert shown["args"][0].endswith("@example.com")


def test_cursor_pages_through_every_letter_once(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        argv = ["dead", "list", APP, "--limit", "2"] + (["--cursor", cursor] if cursor else [])
        code, out, err = cli(capsys, *argv, "--json")
        assert code == 0, err
        page = json.loads(out)
        seen += [letter["id"] for letter in page["letters"]]
        pages += 1
        cursor = page["cursor"]
        if cursor is None:
            break
        assert f"--cursor {cursor}" in err
    assert len(seen) == len(set(seen)) == 5
    assert pages == 3
    assert cli(capsys, "dead", "list", APP, "--cursor", "nonsense")[0] == 2


def test_bulk_replay_starts_a_fresh_retry_budget(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    dry = cli_json(capsys, "dead", "replay", APP, "--task", "shop.charge", "--dry-run")
    assert (dry["matched"], dry["done"], dry["dry_run"]) == (3, 0, True)
    assert len(cli_json(capsys, "dead", "list", APP)["letters"]) == 5, "a dry run changes nothing"

    cli_app.set_outage(outage, 1)  # the replayed charges' first run fails once more
    code, out, err = cli(capsys, "dead", "replay", APP, "--task", "shop.charge")
    assert code == 0, err
    task_ids = out.split()
    assert len(task_ids) == 3
    assert "replayed 3 of 3 dead letter(s)" in err
    work_until(lambda admin: _finished(admin, *task_ids))

    for task_id in task_ids:
        result = cli_json(capsys, "result", APP, task_id)
        assert result["state"] == "SUCCESS", result
        assert result["result"].startswith("charged")
    attempts = sorted(cli_json(capsys, "result", APP, task_id)["attempt"] for task_id in task_ids)
    assert attempts == [1, 1, 2], "a replay starts again at attempt 1, with its retries"
    left = cli_json(capsys, "dead", "list", APP)["letters"]
    assert {letter["task"] for letter in left} == {"shop.email"}


def test_a_verbatim_replay_keeps_the_exhausted_attempt(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    cli_app.set_outage(outage, 1)
    email = cli_json(capsys, "dead", "list", APP, "--task", "shop.email")["letters"][0]
    code, _, err = cli(capsys, "dead", "replay", APP, email["id"], "--verbatim")
    assert code == 0, err
    work_until(dead_count(5))
    again = cli_json(capsys, "dead", "list", APP, "--task-id", email["task_id"])["letters"]
    assert len(again) == 1
    assert again[0]["attempt"] == 3, "no retry was left: dead-lettered at its first failure"


def test_replay_keeps_history_and_the_task_page_shows_it(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    email = cli_json(capsys, "dead", "list", APP, "--task", "shop.email")["letters"][0]
    code, _, err = cli(capsys, "dead", "replay", APP, "-q", "default", email["id"])
    assert code == 0, err
    work_until(dead_count(5))  # the outage goes on: dead again, after three more attempts
    code, out, err = cli(capsys, "result", APP, email["task_id"], "--json")
    assert code == 1, "a failed task's result exits 1"
    info = json.loads(out)
    assert info["state"] == "FAILURE"
    assert info["attempt"] == 3
    letter = info["dead_letter"]
    assert letter is not None
    assert letter["task_id"] == email["task_id"]
    events = [entry["event"] for entry in info["history"]]
    assert events == ["retry", "retry", "dead", "replay", "retry", "retry"]
    assert "by " in info["history"][3]["detail"]
    code, out, _ = cli(capsys, "result", APP, email["task_id"])
    assert code == 1
    assert "Traceback" in out


def test_delete_purge_queues_and_exit_codes(
    outage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_bad_night(outage)
    queues = {q["name"]: q for q in cli_json(capsys, "queues", APP)}
    assert queues["billing"]["dead"] == 3
    assert queues["default"]["dead"] == 2
    assert queues["billing"]["ready"] == 0
    first = cli_json(capsys, "dead", "list", APP)["letters"][0]
    assert cli(capsys, "dead", "delete", APP, first["id"])[0] == 0
    code, _, err = cli(capsys, "dead", "delete", APP, first["id"])
    assert code == 1
    assert f"no dead letter {first['id']!r}" in err
    assert cli(capsys, "dead", "show", APP, first["id"])[0] == 1
    code, _, err = cli(capsys, "dead", "replay", APP)
    assert code == 2, "replaying nothing in particular is a usage error"
    assert "--all" in err
    assert cli(capsys, "dead", "list", APP, "--bogus")[0] == 2
    assert cli(capsys, "dead", "list", "no_such_module:app")[0] == 2
    assert cli(capsys, "dead", "list", APP, "--since", "last tuesday")[0] == 2
    purged = cli_json(capsys, "dead", "purge", APP)
    assert purged["total"] == 4
    assert purged["purged"]["billing"] + purged["purged"]["default"] == 4
    assert cli_json(capsys, "dead", "list", APP)["letters"] == []


def test_send_and_result(outage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "send", APP, "shop.add", "--args", "[2, 3]")
    assert code == 0, err
    (task_id,) = out.split()
    assert f"as task {task_id}" in err
    pending = cli_json(capsys, "result", APP, task_id)
    assert pending["state"] == "PENDING"
    sent = cli_json(
        capsys, "send", APP, "shop.add", "--kwargs", '{"x": 1, "y": 1}', "--queue", "billing"
    )
    work_until(lambda admin: _finished(admin, task_id, sent["task_id"]))
    assert cli_json(capsys, "result", APP, task_id)["result"] == 5
    done = cli_json(capsys, "result", APP, sent["task_id"], "--wait", "--timeout", "1")
    assert (done["state"], done["result"]) == ("SUCCESS", 2)
    assert cli(capsys, "send", APP, "shop.add", "--args", "{not json")[0] == 2
    assert cli(capsys, "send", APP, "shop.add", "--args", '{"x": 1}')[0] == 2
    code, _, err = cli(capsys, "send", APP, "shop.nope")
    assert code == 2
    assert "registered: shop.add, shop.charge, shop.email" in err
    assert cli(capsys, "send", APP, "shop.add", "--args", '["a", "b"]')[0] == 2
    code, _, err = cli(capsys, "result", APP, "no-such-task", "--wait", "--timeout", "0.1")
    assert code == 1
    assert "did not finish" in err


async def _finished(admin: Admin, *task_ids: str) -> bool:
    states = [(await admin.task(task_id)).state for task_id in task_ids]
    return all(state.final for state in states)


def test_queues_watch_prints_json_lines(outage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "queues", APP, "--watch", "--interval", "0.05", "--count", "3", "--json"
    )
    assert code == 0
    frames = [json.loads(line) for line in out.splitlines()]
    assert len(frames) == 3
    assert {q["name"] for q in frames[0]["queues"]} >= {"default", "billing"}


def test_rich_tables_on_a_terminal(
    outage: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chicory.cli.output._is_terminal", lambda stream: True)
    monkeypatch.setenv("COLUMNS", "160")
    code, out, _ = cli(capsys, "queues", APP)
    assert code == 0
    header = next(line for line in out.splitlines() if "QUEUE" in line)
    assert "\t" not in header
    assert "IN FLIGHT" in header
    assert "OLDEST READY" in header
    assert "─" in out, "drawn by rich"


def test_every_option_has_help_that_names_its_default() -> None:
    tree = build_tree()
    formatter = Formatter("chicory")
    for path, parser in tree.leaves.items():
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            text = formatter._get_help_string(action) or ""
            assert action.help, f"chicory {' '.join(path)} {action.option_strings[0]} has no help"
            assert "default" in text.lower(), (
                f"chicory {' '.join(path)} {action.option_strings[0]}: no default in {text!r}"
            )


def test_workers_lists_fresh_counts(outage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def run() -> None:
        async with cli_app.app as app:
            worker = Worker(app, queues=["default"], heartbeat_interval=0.05)
            async with anyio.create_task_group() as group:
                group.start_soon(worker.serve)
                await worker.wait_started()
                result = await cli_app.add.delay(1, 2)
                assert await result.get(timeout=10) == 3
                await anyio.sleep(0.2)
                workers = await Admin(app).workers()  # earlier tests' may linger a while
                (status,) = [w for w in workers if w.worker_id == worker.worker_id]
                assert (status.processed, status.active, status.failed) == (1, 0, 0)
                assert status.queues == ["default"]
                assert status.age < 1
                worker.stop()

    anyio.run(run)
