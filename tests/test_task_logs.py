"""Per-task log lines (chicory.worker.tasklog): a worker on memory:// in-process and on real
Redis in its own process logs a success, a retry and a dead letter, as text and as JSON,
every line with the task's name, id, attempt, queue and the worker's id."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from obs_app import build

from chicory import Chicory, TaskContext, TaskFailedError, Worker
from chicory.logconfig import make_formatter
from chicory.worker.startup import log_settings, warn_about_lease
from e2e_support import eventually, serving
from processes import TESTS, delete_keys

FORMATS = pytest.mark.parametrize("fmt", ["text", "json"])


@pytest.fixture
def captured() -> Iterator[dict[str, Any]]:
    """Chicory's log records at DEBUG, formatted by the formatter the test picks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("chicory")
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    state: dict[str, Any] = {"stream": stream, "handler": handler}
    try:
        yield state
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


async def run_workload(app: Chicory) -> dict[str, str]:
    """Run a success, a retry and a dead letter; return their task ids by task name."""
    ok, flaky, doomed = (app.tasks[f"obs.{n}"] for n in ("ok", "flaky", "doomed"))
    results = [await ok.delay(7), await flaky.delay(), await doomed.delay()]
    assert await results[0].get(timeout=20) == 7
    assert await results[1].get(timeout=20) == 2
    with pytest.raises(TaskFailedError):
        await results[2].get(timeout=20)
    return {name: r.id for name, r in zip(("ok", "flaky", "doomed"), results, strict=True)}


def records(output: str, fmt: str) -> list[dict[str, Any]]:
    """The per-task records of a worker's output, each as a dict of its fields."""
    if fmt == "json":
        found = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        return [r for r in found if r.get("logger") == "chicory.task"]
    found = []
    for line in output.splitlines():
        marker = line.find("task ")
        if "chicory.task" not in line[:marker] and not line.startswith("task "):
            continue
        text = line[marker:]
        event, _, rest = text.removeprefix("task ").partition(": ")
        name_id, _, rest = rest.partition(" ")
        name, _, task_id = name_id.rstrip("]").partition("[")
        fields = dict(part.split("=", 1) for part in rest.split(" ")[:3])
        found.append(
            {
                "event": event.replace(" ", "_"),
                "task_name": name,
                "task_id": task_id,
                "attempt": int(fields["attempt"]),
                "queue": fields["queue"],
                "worker_id": fields["worker"],
                "message": text,
            }
        )
    return found


def check(found: list[dict[str, Any]], ids: dict[str, str], worker_id: str, output: str) -> None:
    """The lines a success, a retry and a dead letter must produce."""
    for record in found:
        assert record["worker_id"] == worker_id
        assert record["queue"] == "obs"
    by = {(r["event"], r["task_id"], r["attempt"]): r for r in found}
    for name, task_id in ids.items():
        assert by[("received", task_id, 1)]["task_name"] == f"obs.{name}"
    assert ("succeeded", ids["ok"], 1) in by
    retrying = by[("retrying", ids["flaky"], 1)]
    assert "ConnectionError: smtp server went away" in str(retrying.get("error", retrying))
    assert ("succeeded", ids["flaky"], 2) in by
    failed = by[("failed", ids["doomed"], 2)]
    assert "this address does not exist" in str(failed.get("reason", failed["message"]))
    # Failures carry their traceback; at DEBUG, retries too.
    assert output.count("Traceback (most recent call last)") >= 3


@FORMATS
async def test_in_process_worker_logs_every_event(captured: dict[str, Any], fmt: str) -> None:
    captured["handler"].setFormatter(make_formatter(fmt))
    app = build("memory://", backend="memory://")
    async with serving(app, queues=["obs"]) as worker:
        ids = await run_workload(app)
        await eventually(lambda: worker.processed == 5)
    await app.close()
    output = captured["stream"].getvalue()
    found = records(output, fmt)
    check(found, ids, worker.worker_id, output)
    if fmt == "json":
        success = next(r for r in found if r["event"] == "succeeded")
        assert success["level"] == "DEBUG"
        assert success["duration"] >= 0
        failed = next(r for r in found if r["event"] == "failed")
        assert failed["level"] == "ERROR"
        assert "ValueError" in failed["exc_info"]
    # An in-process worker on memory:// is the point of memory://: no warning about it.
    assert "process-local" not in output


@FORMATS
def test_worker_process_on_redis_logs_every_event(fmt: str, tmp_path: Path) -> None:
    prefix = f"chicory-test-{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    log = tmp_path / "worker.log"
    env = {**os.environ, "CHICORY_BROKER_URL": url, "PYTHONPATH": str(TESTS)}
    env.pop("CHICORY_BACKEND_URL", None)
    argv = [sys.executable, "-m", "chicory.cli", "worker", "obs_app:app", "-q", "obs"]
    argv += ["--log-level", "DEBUG", "--log-format", fmt]  # after the command's name
    with log.open("wb") as out:
        worker = subprocess.Popen(argv, cwd=TESTS, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        producer = build(url)

        async def main() -> dict[str, str]:
            try:
                return await run_workload(producer)
            finally:
                await producer.close()

        ids = anyio.run(main)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        delete_keys(prefix)
    output = log.read_text()
    found = records(output, fmt)
    (worker_id,) = {r["worker_id"] for r in found}
    check(found, ids, worker_id, output)
    assert f"worker {worker_id} settings: broker=redis://127.0.0.1:6379/0" in output
    assert "process-local" not in output


def test_a_worker_process_on_memory_warns_that_it_is_alone(tmp_path: Path) -> None:
    env = {**os.environ, "CHICORY_BROKER_URL": "memory://", "PYTHONPATH": str(TESTS)}
    argv = [sys.executable, "-m", "chicory.cli", "worker", "obs_app:app", "--log-format", "json"]
    worker = subprocess.Popen(
        argv, cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert worker.stdout is not None
        lines = []
        for line in worker.stdout:
            lines.append(json.loads(line))
            if "consuming" in lines[-1]["message"]:
                break
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    (warning,) = [r for r in lines if "process-local" in r["message"]]
    assert warning["level"] == "WARNING"


def test_settings_are_logged_with_urls_redacted(caplog: pytest.LogCaptureFixture) -> None:
    app = Chicory(
        broker="redis://user:s3cret@127.0.0.1:6399/0", backend="memory://", default_queue="q"
    )

    @app.task(name="s.amo", delivery_mode="at_most_once")  # type: ignore[arg-type]
    async def amo() -> None:
        return None

    worker = Worker(app, concurrency=7, prefetch=3, drain_timeout=12)
    with caplog.at_level(logging.INFO, logger="chicory.worker"):
        log_settings(worker)
    (record,) = caplog.records
    text = record.getMessage()
    assert "s3cret" not in text
    assert "s3cret" not in json.dumps(worker.settings())
    assert "broker=redis://user:***@127.0.0.1:6399/0" in text
    assert "queues=q concurrency=7 prefetch=3" in text
    assert "drain_timeout=12s delivery_mode=at_least_once (default; tasks: 1 at_most_once)" in text
    assert record.__dict__["lease_seconds"] == app.broker.capabilities.lease_seconds


async def test_a_lost_lease_and_the_redelivery_are_logged(captured: dict[str, Any]) -> None:
    captured["handler"].setFormatter(make_formatter("json"))
    app = Chicory(broker="memory://", backend="memory://", broker_options={"lease_seconds": 0.2})
    lost: list[Any] = []

    class LeaseWatcher:
        from chicory.plugins import hookimpl

        @hookimpl
        def chicory_task_lease_lost(self, event: Any) -> None:
            lost.append(event)

    app.plugins.register(LeaseWatcher())

    @app.task(name="l.slow")
    async def slow(ctx: TaskContext) -> int:
        if ctx.delivery_count == 1:
            await anyio.sleep(0.6)  # past the lease, with no renewal
        return ctx.delivery_count

    result = await slow.delay()
    async with serving(app, lease_renew_interval=60.0) as worker:
        assert await result.get(timeout=10) in (1, 2)
        await eventually(lambda: worker.processed >= 2, timeout=10)
        await eventually(lambda: bool(lost), timeout=10)
    await app.close()
    found = records(captured["stream"].getvalue(), "json")
    events = {r["event"] for r in found if r["task_id"] == result.id}
    assert {"lease_lost", "redelivered"} <= events
    redelivered = next(r for r in found if r["event"] == "redelivered")
    assert (redelivered["level"], redelivered["delivery_count"]) == ("INFO", 2)
    assert lost[0].task_id == result.id


async def test_at_info_a_retry_is_one_line_and_a_failure_has_its_traceback(
    captured: dict[str, Any],
) -> None:
    captured["handler"].setFormatter(make_formatter("text"))
    logging.getLogger("chicory").setLevel(logging.INFO)
    app = build("memory://", backend="memory://")
    async with serving(app, queues=["obs"]) as worker:
        await run_workload(app)
        await eventually(lambda: worker.processed == 5)
    await app.close()
    output = captured["stream"].getvalue()
    assert "task received" not in output  # DEBUG lines are off
    assert "task succeeded" not in output
    retry = output[output.index("task retrying") :]
    assert "Traceback" not in retry.split("task failed")[0], "at INFO a retry is one line"
    failure = output[output.index("task failed") :]
    assert failure.splitlines()[1] == "Traceback (most recent call last):"


def test_a_renewed_lease_of_unknown_length_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Chicory("memory://")
    declared = app.broker.capabilities
    assert declared.lease_renewal
    assert declared.lease_seconds
    with caplog.at_level(logging.WARNING, logger="chicory.worker"):
        warn_about_lease(Worker(app))
        assert not caplog.records, "a declared lease needs no guess"
        app.broker._capabilities = attrs.evolve(declared, lease_seconds=None)  # type: ignore[attr-defined]
        warn_about_lease(Worker(app, lease_renew_interval=1.0))
        assert not caplog.records, "an explicit renewal interval needs no guess"
        warn_about_lease(Worker(app))
    (record,) = caplog.records
    assert "declares lease_renewal but no lease_seconds" in record.getMessage()
    assert "renews leases every 10 s" in record.getMessage()
    assert "lease_renew_interval" in record.getMessage()
