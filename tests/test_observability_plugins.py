"""The observability plugins as installed distributions: found by name through the ``chicory``
entry point, listed by ``chicory plugins``, and never imported by ``import chicory``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chicory import Chicory
from chicory.cli import main

HEAVY = ("prometheus_client", "opentelemetry", "sentry_sdk", "pythonjsonlogger")


def test_chicory_and_its_plugin_registrations_import_no_observability_library() -> None:
    code = (
        "import sys, chicory; chicory.Chicory(broker='memory://', backend='memory://'); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_chicory_plugins_lists_the_middleware(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    offered = {item["name"]: item for item in listed["middleware"]}
    assert set(offered) >= {"prometheus", "opentelemetry", "sentry"}
    assert offered["prometheus"]["distribution"].startswith("chicory-prometheus ")


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("prometheus", "PrometheusMiddleware"),
        ("opentelemetry", "OpenTelemetryMiddleware"),
        ("sentry", "SentryMiddleware"),
    ],
)
async def test_an_app_enables_a_plugin_by_name(
    name: str, cls: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHICORY_PROMETHEUS_PORT", "")  # the Prometheus one: serve nothing
    app = Chicory(broker="memory://", backend="memory://", middleware=[name])
    (middleware,) = app.middleware
    assert type(middleware).__name__ == cls
    await app.close()
