"""The same benchmarks on two Python interpreters, in interleaved runs.

CPython of one version runs pure Python at very different speeds depending on how it was
built (profile-guided and link-time optimization, a shared or a static libpython), and a
task queue's every number moves with it: Chicory's, the peers' and the floors'. This script
says by how much on one machine, so runs made on different interpreters can be read side
by side.

Usage (from the repository root, with the ``bench`` dependency group installed, as
``benchmarks/run`` does; Redis on 127.0.0.1:6379, database 13 flushed before and after)::

    .venv/bin/python benchmarks/interpreters.py /usr/bin/python3.11 /opt/python/bin/python3
    .venv/bin/python benchmarks/interpreters.py A B --pairs 5   # default: 3 pairs

Each interpreter gets a virtual environment of its own, synced from ``uv.lock`` with the
``bench`` group into a temporary directory (removed at the end; ``uv`` must be on ``PATH``).
Then, alternating A, B, A, B ... so that slow drift of the machine hits both alike, each
interpreter runs in fresh processes: the speed probe of ``benchmarks/run``, the
XREADGROUP+XACK floor, one memory:// repetition (``chicory_bench.memory_rep``: producer and
worker in one process) and an at-least-once drain on Redis with a fresh ``chicory worker``
process (``chicory_bench.redis_drain_rep``, concurrency 64, prefetch 192). Each pair is
printed, then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
from common import BENCH_DIR, Measurement, Settings, in_child

ROOT = BENCH_DIR.parent


@dataclass(frozen=True)
class _Measure:
    """One row of the table: the benchmark function a child process runs, and its number."""

    label: str
    module: str
    function: str
    args: tuple[object, ...]
    value: Callable[[Measurement | dict[str, Measurement]], float]


def _measures(log: Path) -> list[_Measure]:
    def field(name: str) -> Callable[[Measurement | dict[str, Measurement]], float]:
        def value(result: Measurement | dict[str, Measurement]) -> float:
            assert isinstance(result, Measurement)
            return float(result.values[name])

        return value

    def memory(result: Measurement | dict[str, Measurement]) -> float:
        assert isinstance(result, dict)
        return float(result["drain_at_least_once"].values["e2e"])

    return [
        _Measure("speed probe, ms (lower is faster)", "interpreters", "probe", (), field("ms")),
        _Measure(
            "floor: XREADGROUP + XACK, messages/s",
            "floor",
            "run_floor",
            (10_000, 256),
            field("xreadgroup_xack"),
        ),
        _Measure(
            "memory:// at least once, end to end, tasks/s",
            "chicory_bench",
            "memory_rep",
            (),
            memory,
        ),
        _Measure(
            "Redis drain at least once, end to end, tasks/s",
            "chicory_bench",
            "redis_drain_rep",
            (64, 192, log),
            field("e2e"),
        ),
    ]


async def probe(settings: Settings) -> Measurement:
    """The speed probe of ``benchmarks/run`` in this interpreter (``child.py`` runs it)."""
    from run import _speed_probe

    return Measurement({"ms": _speed_probe()})


def _environment(python: str, into: Path) -> str:
    """Sync the workspace with the bench group for ``python`` into ``into``; its interpreter."""
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is not on PATH: install it with 'python3 -m pip install uv'")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(into), "UV_PYTHON_DOWNLOADS": "never"}
    argv = [uv, "sync", "--frozen", "--group", "bench", "--compile-bytecode", "--quiet"]
    subprocess.run([*argv, "--python", python], cwd=ROOT, env=env, check=True)
    return str(into / "bin" / "python")


async def _pairs(
    pythons: list[str], names: list[str], pairs: int, settings: Settings, log: Path
) -> None:
    measures = _measures(log)
    values: dict[tuple[int, int], list[float]] = {}
    print("each line: " + "; ".join(m.label for m in measures), flush=True)
    for pair in range(1, pairs + 1):
        for side, python in enumerate(pythons):
            for index, m in enumerate(measures):
                result = await in_child(m.module, m.function, settings, *m.args, python=python)
                values.setdefault((side, index), []).append(m.value(result))
            numbers = ", ".join(f"{values[side, i][-1]:,.0f}" for i in range(len(measures)))
            print(f"pair {pair} {'AB'[side]}: {numbers}", flush=True)
    print()
    for side, name in enumerate(names):
        print(f"{'AB'[side]} = {name}")
    print("| measure | A | B | B / A |\n|---|---|---|---|")
    for index, m in enumerate(measures):
        a = statistics.median(values[0, index])
        b = statistics.median(values[1, index])
        print(f"| {m.label} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")


def main() -> None:
    """Build both environments, run the interleaved pairs, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("a", help="the first interpreter (a path, or a name on PATH)")
    parser.add_argument("b", help="the second interpreter")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    client = redis.Redis(host=settings.host, port=settings.port, db=settings.db)
    client.flushdb()
    try:
        with tempfile.TemporaryDirectory(prefix="chicory-interpreters-") as tmp:
            pythons = [
                _environment(p, Path(tmp) / f"venv-{i}") for i, p in enumerate((args.a, args.b))
            ]
            names = [args.a, args.b]
            asyncio.run(_pairs(pythons, names, args.pairs, settings, Path(tmp) / "worker.log"))
    finally:
        client.flushdb()
        client.close()


if __name__ == "__main__":
    main()
