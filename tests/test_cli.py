"""The command line as an operator uses it: plugins, demo, and a real worker process."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from pathlib import Path

import pytest

from chicory import Chicory, DeliveryMode
from chicory.cli import main
from chicory.worker.tuning import YOUNG_THRESHOLD
from e2e_support import eventually
from processes import delete_keys, run_counts, worker_process


def test_plugins_lists_memory_and_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "memory://" in out
    assert "chicory-memory" in out
    assert "redis://" in out
    assert "chicory-redis" in out


def test_unknown_broker_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--broker", "kafka://localhost", "--tasks", "5"]) == 2
    err = capsys.readouterr().err
    assert "no installed broker plugin handles URL scheme 'kafka'" in err
    assert "memory (memory://)" in err


def test_demo_runs_both_modes_with_retries_and_dead_letters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--log-level", "ERROR", "demo", "--tasks", "50"]) == 0
    out = capsys.readouterr().out
    assert "demo.log_event" in out
    assert "demo.charge" in out
    assert "dead letter(s) from demo.sync_inventory" in out
    assert "retries: 0" not in out


def test_unreachable_broker_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chicory.worker.tune_gc", lambda: None)  # this process's collector
    url = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("CHICORY_BROKER_URL", url)  # restored after the test; --broker sets it
    monkeypatch.delitem(sys.modules, "worker_app", raising=False)  # import it with that URL
    code = main(["worker", "worker_app:app", "--broker", url])
    err = capsys.readouterr().err
    assert code == 1  # a failure, not a usage error
    assert any(line.startswith("error: could not connect") for line in err.splitlines())
    assert "Traceback" not in err


def test_bad_app_path_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "no_such_module:app"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err


async def test_sigterm_drains_and_hands_back_unfinished_work_at_once(tmp_path: Path) -> None:
    """SIGTERM: fetching stops, the drain timeout passes, unfinished at-least-once work is
    handed back at once (ready again, not waiting for a lease), and the worker exits 0."""
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    runs = tmp_path / "runs.txt"
    app = Chicory(url)

    @app.task(name="w.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def alo(n: int, seconds: float) -> int: ...

    finished = await alo.delay(0, 0.0)
    await alo.delay_many([(1, 60.0), (2, 60.0), (3, 60.0)])
    broker = await app.connected_broker()
    try:
        with worker_process(
            url, runs, "--concurrency", "1", "--prefetch", "2", "--drain-timeout", "0.5"
        ) as worker:
            assert await finished.get(timeout=20) == 0
            await eventually(lambda: run_counts(runs)[0][1] == 1, timeout=20)
            worker.signal(signal.SIGTERM)
            assert worker.wait(20) == 0
            assert "draining" in worker.output()
        counts = await broker.counts("default")
        assert (counts.ready, counts.in_flight) == (3, 0)
        started, ended = run_counts(runs)
        assert started == {0: 1, 1: 1}
        assert ended == {0: 1}
    finally:
        await app.close()
        delete_keys(prefix)


@pytest.mark.parametrize("tuned", [True, False])
async def test_worker_process_tunes_the_collector_unless_asked_not_to(
    tmp_path: Path, tuned: bool
) -> None:
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    app = Chicory(url)

    @app.task(name="w.gc")
    async def gc_settings() -> list[int]: ...

    flags = () if tuned else ("--no-gc-tuning",)
    try:
        with worker_process(url, tmp_path / "runs.txt", *flags):
            young, frozen = await (await gc_settings.delay()).get(timeout=20)
    finally:
        await app.close()
        delete_keys(prefix)
    if tuned:
        assert young == YOUNG_THRESHOLD
        assert frozen > 1000  # the interpreter, the libraries and the app, loaded at start-up
    else:
        assert (young, frozen) == (700, 0)  # CPython's defaults


def test_plugins_lists_the_dashboard_and_speaks_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "dashboard" in out
    assert "chicory-dashboard" in out
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in listing["plugins"]} >= {"memory", "redis", "dashboard"}
    assert {b["name"] for b in listing["brokers"]} >= {"memory", "redis"}


def test_dashboard_without_its_package_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chicory.cli.run_commands.DASHBOARD_MODULE", "chicory_no_such_dashboard")
    assert main(["dashboard", "cli_app:app"]) == 2
    assert "pip install chicory-dashboard" in capsys.readouterr().err


def test_the_demo_progress_ends_its_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tasks", "20"]) == 0
    captured = capsys.readouterr()
    finished = [line for line in captured.err.splitlines() if line.startswith("finished")]
    assert len(finished) == 1, captured.err
    assert finished[0].startswith("finished 17/17 | succeeded")
    assert "finished" not in captured.out
    assert "TASK\tOUTCOME\tCOUNT" in captured.out.splitlines()
