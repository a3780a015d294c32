"""A plugin author's clean virtualenv: only ``chicory-core[testing]`` and the example plugin.

The wheels are built from this workspace and installed with uv at the versions ``uv.lock``
pins, from uv's cache (offline; online only if the cache lacks something). In that
environment ``chicory conformance example://`` must run every MUST guarantee the example
broker's capabilities allow, skip nothing for any other reason, and pass; with one of the
testing extra's packages removed it must fail and name the command that fixes it.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from chicory.testing import GUARANTEES, SUITE_MODULES
from chicory.testing.requirements import unmet_requirement
from chicory_example_plugin.broker import ExampleBroker

ROOT = Path(__file__).resolve().parent.parent
FIX = "pip install 'chicory-core[testing]'"
BROKER_SUITES = {
    "BrokerBasicsSuite",
    "BrokerSettlementSuite",
    "BrokerDeliverySuite",
    "DeadLetterSuite",
    "BrokerStatefulSuite",
    "WorkerSuite",
}

pytestmark = pytest.mark.slow

for _module in SUITE_MODULES:
    importlib.import_module(_module)


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to build a clean environment (./scripts/check installs it)"
    return uv


def _run(
    args: Sequence[str], *, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _uv_ok(args: Sequence[str], *, cwd: Path) -> None:
    """Run a uv command offline, or online if uv's cache lacks something (CI has PyPI)."""
    done = _run([_uv(), *args, "--offline"], cwd=cwd)
    if done.returncode != 0:
        done = _run([_uv(), *args], cwd=cwd)
    assert done.returncode == 0, f"uv {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv holding chicory-core[testing] and the example plugin, nothing else."""
    work = tmp_path_factory.mktemp("clean-install")
    dist = work / "dist"
    for member in ("chicory-core", "chicory-memory", "examples/chicory-example-plugin"):
        _uv_ok(["build", "--wheel", "--out-dir", str(dist), str(ROOT / member)], cwd=ROOT)
    pins = work / "pins.txt"
    _uv_ok(
        [
            "export",
            "--frozen",
            "--no-hashes",
            "--format=requirements-txt",
            "--package=chicory-core",
            "--extra=testing",
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
            f"--output-file={pins}",
        ],
        cwd=ROOT,
    )
    env = work / "venv"
    python = env / "bin" / "python"
    _uv_ok(["venv", str(env), "--python", sys.executable], cwd=work)
    wheels = sorted(str(w) for w in dist.glob("*.whl"))
    _uv_ok(
        ["pip", "install", "--python", str(python), "--no-deps", "-r", str(pins), *wheels], cwd=work
    )
    # --no-deps installed exactly the lock's pins; check that they are all anything needs.
    _uv_ok(["pip", "check", "--python", str(python)], cwd=work)
    return env


def _installed(env: Path) -> set[str]:
    done = _run([_uv(), "pip", "freeze", "--python", str(env / "bin" / "python")], cwd=env)
    return {re.split(r"[=@ ]", line, maxsplit=1)[0].lower() for line in done.stdout.split()}


def _must_ids() -> set[str]:
    """The MUST guarantees of the broker suites that the example broker's capabilities allow."""
    capabilities = ExampleBroker().capabilities
    return {
        g.id
        for g in GUARANTEES.values()
        if g.level.value == "MUST"
        and g.area in BROKER_SUITES
        and all(unmet_requirement(capabilities, None, r) is None for r in g.requires)
    }


def _rows(output: str) -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in output.splitlines():
        parts = line.split(None, 4)
        if len(parts) >= 4 and parts[1] in GUARANTEES:
            rows[parts[1]] = (parts[2], parts[3], parts[4] if len(parts) > 4 else "")
    return rows


def test_every_must_runs_and_passes_in_a_clean_environment(venv: Path) -> None:
    installed = _installed(venv)
    assert {"chicory-core", "chicory-memory", "chicory-example-plugin"} <= installed
    assert not installed & {"chicory-redis", "pytest-asyncio", "redis", "anyio-pytest"}
    done = _run([str(venv / "bin" / "chicory"), "conformance", "example://"], cwd=venv)
    rows = _rows(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    missing = _must_ids() - {gid for gid, (_, result, _) in rows.items() if result == "pass"}
    assert not missing, f"MUST guarantees that did not run and pass: {sorted(missing)}"
    for gid, (_, result, detail) in rows.items():
        assert result in ("pass", "skip"), (gid, result, detail)
        if result == "skip":
            assert detail.startswith("the broker declares"), (gid, detail)
    assert "Cleaned up" in done.stdout


def test_without_the_testing_extra_it_fails_and_names_the_fix(venv: Path) -> None:
    python = str(venv / "bin" / "python")
    chicory = str(venv / "bin" / "chicory")
    _uv_ok(["pip", "uninstall", "--python", python, "chicory-memory"], cwd=venv)
    done = _run(
        [chicory, "conformance", "example://", "-k", "worker.round_trip or stateful."], cwd=venv
    )
    rows = _rows(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert rows["worker.round_trip"][1] == "ERROR", rows
    assert rows["stateful.matches_memory_oracle"][1] == "ERROR", rows
    assert FIX in done.stdout
    _uv_ok(["pip", "uninstall", "--python", python, "hypothesis"], cwd=venv)
    done = _run([chicory, "conformance", "example://"], cwd=venv)
    assert done.returncode == 2, done.stdout + done.stderr
    assert FIX in done.stdout
