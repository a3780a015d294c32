"""What an outside author checks besides the suite: Chicory finds the plugin and selects it."""

from __future__ import annotations

import io

import anyio
import pytest

from chicory import Chicory, Worker
from chicory.cli import main
from chicory.plugins import BackendKind, PluginHost
from chicory.testing.runner import run_conformance
from chicory_example_plugin.broker import ExampleBroker


def test_chicory_plugins_lists_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert "chicory-example-plugin" in out


def test_it_is_registered_from_its_distribution() -> None:
    (item,) = [i for i in PluginHost().installed(BackendKind.BROKER) if i.spec.name == "example"]
    assert item.spec.schemes == ("example",)
    assert item.distribution is not None
    assert item.distribution.startswith("chicory-example-plugin")


async def test_the_url_scheme_selects_it() -> None:
    app = Chicory(broker="example://?lease_seconds=5", backend="memory://")
    assert isinstance(app.broker, ExampleBroker)

    @app.task(name="example.add")
    async def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(app, concurrency=1, heartbeat_interval=0, fetch_timeout=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        assert await (await add.delay(2, 3)).get(timeout=10) == 5
        worker.stop()
    await app.close()


def test_chicory_conformance_runs_on_it() -> None:
    out = io.StringIO()
    code = run_conformance("example://", keyword="round_trip or ack_removes", out=out)
    assert code == 0, out.getvalue()
    assert "settle.ack_removes" in out.getvalue()
