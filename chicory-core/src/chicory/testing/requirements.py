"""What a guarantee needs: declared capabilities (or it is skipped) and prerequisites (or ERROR).

**Capability expressions** (a guarantee's ``requires``) are read against the capabilities the
harness declares:

* ``fifo``: the capability is declared (truthy);
* ``lease_model=session``: the capability has that value;
* ``harness.purge``: the harness field is set (for guarantees about the harness itself);
* ``a|b``: any of the alternatives holds.

**Prerequisites** (a guarantee's ``needs``) are what a test uses besides the broker. A missing
one is never a reason to skip: the test is an ERROR whose message says how to provide it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, Final

from chicory.backend import ResultBackend
from chicory.broker import Broker, Capabilities
from chicory.plugins import BackendKind, PluginHost

__all__ = [
    "INSTALL_TESTING",
    "NO_DEAD_LETTER_LIMITS",
    "NO_SEVER",
    "describe_requirement",
    "memory_broker_factory",
    "memory_result_backend",
    "missing_oracle",
    "missing_result_backend",
    "unmet_requirement",
]

INSTALL_TESTING: Final = "pip install 'chicory-core[testing]'"
"""The one command that installs everything the conformance suite runs on."""

NO_DEAD_LETTER_LIMITS: Final = (
    "the broker declares dead-letter limits, so its harness must give "
    "BrokerHarness.dead_letter_limits, a factory of brokers with small limits "
    "(docs/conformance.md)"
)
"""Why a broker declaring dead-letter limits cannot have them checked."""

NO_SEVER: Final = (
    "the harness cannot sever a consumer's connection: set BrokerHarness.sever to an "
    "async function that cuts it as a network failure would, or give the broker's "
    "consumers an async sever() method (docs/conformance.md)"
)
"""Why the suite cannot cut a consumer's connection as a network failure would."""


def _holds(capabilities: Capabilities, harness: Any, atom: str) -> bool:
    if atom.startswith("harness."):
        return getattr(harness, atom.removeprefix("harness."), None) is not None
    name, _, value = atom.partition("=")
    declared = getattr(capabilities, name)
    return str(declared) == value if value else bool(declared)


def _describe_atom(capabilities: Capabilities, atom: str) -> str:
    if atom.startswith("harness."):
        return f"BrokerHarness.{atom.removeprefix('harness.')} is not set"
    name, _, value = atom.partition("=")
    declared = getattr(capabilities, name)
    if value:
        return f"the broker declares {name}={declared!r}, not {value!r} (Capabilities.{name})"
    return f"the broker declares no {name!r} capability (Capabilities.{name}={declared!r})"


def unmet_requirement(capabilities: Capabilities, harness: Any, expression: str) -> str | None:
    """Why ``expression`` does not hold for these capabilities, or None if it does."""
    atoms = expression.split("|")
    if any(_holds(capabilities, harness, atom) for atom in atoms):
        return None
    return "; and ".join(_describe_atom(capabilities, atom) for atom in atoms)


def describe_requirement(expression: str) -> str:
    """``expression`` for people: ``lease_renewal|lease_model=session`` -> ``... or ...``."""
    return " or ".join(expression.split("|"))


def _installed(kind: BackendKind, name: str) -> Callable[..., Any] | None:
    for item in PluginHost().installed(kind):
        if item.spec.name == name:
            factory: Callable[..., Any] = item.spec.load_factory()
            return factory
    return None


def memory_broker_factory() -> Callable[..., Broker] | None:
    """The reference broker's ``from_url`` factory, if ``chicory-memory`` is installed."""
    return _installed(BackendKind.BROKER, "memory")


def memory_result_backend() -> ResultBackend | None:
    """A new in-process result backend from ``chicory-memory``, if it is installed."""
    factory = _installed(BackendKind.RESULT_BACKEND, "memory")
    if factory is None:
        return None
    backend: ResultBackend = factory("memory://")
    return backend


def missing_result_backend(harness: Any) -> str | None:
    """Why the end-to-end suite has no result backend to store results in, if it has none."""
    if harness.result_backend is not None or memory_result_backend() is not None:
        return None
    return (
        "the end-to-end suite stores task results in a result backend and none is available: "
        f"{INSTALL_TESTING} (it brings chicory-memory, whose in-process result backend the "
        "suite uses), or set BrokerHarness.result_backend"
    )


def missing_oracle() -> str | None:
    """Why the stateful comparison cannot run (Hypothesis or the reference broker missing)."""
    missing = []
    if importlib.util.find_spec("hypothesis") is None:
        missing.append("Hypothesis, which generates the operation sequences")
    if memory_broker_factory() is None:
        missing.append("chicory-memory, the reference broker it compares with")
    if not missing:
        return None
    return f"the stateful comparison needs {' and '.join(missing)}: {INSTALL_TESTING}"
