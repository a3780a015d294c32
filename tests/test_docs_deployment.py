"""The deployment guide tells the truth: its commands parse, its grace periods cover the drain
it configures, and its KEDA ScaledObject names the Redis stream and group Chicory really uses
and measures what the guide says (checked on a real Redis)."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml

from chicory.cli import build_tree
from chicory_redis.broker import RedisBroker
from chicory_redis.keys import KeySpace

PAGE = Path(__file__).resolve().parent.parent / "docs" / "deployment.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SETTLE_SECONDS = 10  # Worker(settle_timeout=...) default: the final writes after a drain


def _blocks(language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(PAGE.read_text()) if lang == language]


def _yaml_documents() -> list[dict[str, Any]]:
    return [doc for block in _blocks("yaml") for doc in yaml.safe_load_all(block) if doc]


def _drain(argv: list[str]) -> float:
    args = build_tree().parse(argv[1:])
    return float(args.drain_timeout)


def test_the_systemd_unit_runs_a_worker_and_waits_for_its_drain() -> None:
    (unit,) = _blocks("ini")
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    argv = shlex.split(settings["ExecStart"])
    assert argv[0].endswith("/chicory")
    argv[0] = "chicory"
    drain = _drain(argv)
    assert settings["KillSignal"] == "SIGTERM"
    assert float(settings["TimeoutStopSec"]) > drain + SETTLE_SECONDS


def test_the_container_recipe_runs_a_worker_and_docker_waits_for_its_drain() -> None:
    (dockerfile,) = _blocks("dockerfile")
    (cmd,) = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    drain = _drain(json.loads(cmd.removeprefix("CMD ")))  # exec form: the worker is PID 1
    run = next(b for b in _blocks("bash") if "docker run" in b)
    stop_timeout = float(re.search(r"--stop-timeout (\d+)", run).group(1))  # type: ignore[union-attr]
    assert stop_timeout > drain + SETTLE_SECONDS


def test_the_kubernetes_grace_period_covers_the_drain() -> None:
    (deployment,) = [d for d in _yaml_documents() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    drain = _drain(container["args"])
    assert pod["terminationGracePeriodSeconds"] > drain + SETTLE_SECONDS


def test_the_scaled_object_names_chicorys_stream_and_group() -> None:
    keys = KeySpace("chicory").queue("default")  # the default key prefix and queue
    (scaled,) = [d for d in _yaml_documents() if d["kind"] == "ScaledObject"]
    (deployment,) = [d for d in _yaml_documents() if d["kind"] == "Deployment"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis-streams"
    assert trigger["metadata"]["stream"] == keys.stream
    text = PAGE.read_text()
    assert f"`consumerGroup: {keys.group}`" in text  # the lagCount variant
    assert f"| `default` | `{keys.stream}` | `{keys.group}` |" in text


async def test_stream_length_is_outstanding_work_and_lag_is_the_unfetched_part() -> None:
    """What the guide says KEDA measures, on a real Redis: XLEN counts ready and in-flight
    tasks (acked ones are deleted, delayed ones live elsewhere); the group's lag counts the
    tasks no consumer has fetched yet."""
    prefix = f"docs-keda-{uuid.uuid4().hex[:10]}"
    keys = KeySpace(prefix).queue("default")
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    broker = RedisBroker.from_url("redis://127.0.0.1:6379/0", key_prefix=prefix)
    try:
        async with broker:
            for n in range(5):
                await broker.publish("default", f"task {n}".encode())
            later = datetime.now(UTC) + timedelta(hours=1)
            await broker.publish("default", b"later", not_before=later)
            async with broker.consume(["default"], prefetch=2) as consumer:
                held = await consumer.fetch(2, timeout=5)
                assert len(held) == 2
                assert await client.xlen(keys.stream) == 5  # 3 ready + 2 in flight
                (group,) = await client.xinfo_groups(keys.stream)
                assert group["name"].decode() == keys.group
                assert group["lag"] == 3
                await consumer.ack_many(held)
                assert await client.xlen(keys.stream) == 3
                (group,) = await client.xinfo_groups(keys.stream)
                assert group["lag"] == 3
            await broker.delete_queue("default")
    finally:
        keys_left = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys_left:
            await client.delete(*keys_left)
        await client.aclose()
