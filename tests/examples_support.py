"""Loading the framework examples under ``examples/`` in tests, and their Redis settings."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from processes import delete_keys

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(
    monkeypatch: pytest.MonkeyPatch, example: str, module: str, broker_url: str | None
) -> ModuleType:
    """Import ``examples/<example>/<module>.py`` afresh, its app built on ``broker_url``
    (``None``: the variable unset, so ``memory://``)."""
    if broker_url is None:
        monkeypatch.delenv("CHICORY_BROKER_URL", raising=False)
    else:
        monkeypatch.setenv("CHICORY_BROKER_URL", broker_url)
    monkeypatch.delenv("CHICORY_BACKEND_URL", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES / example))
    sys.modules.pop(module, None)
    loaded = importlib.import_module(module)
    monkeypatch.setitem(sys.modules, module, loaded)
    return loaded


@contextmanager
def redis_prefix(label: str) -> Iterator[str]:
    """A key prefix of the test's own on the shared Redis; its keys are deleted after."""
    prefix = f"t-{label}-{uuid.uuid4().hex[:8]}"
    try:
        yield prefix
    finally:
        delete_keys(prefix)


def redis_url(prefix: str) -> str:
    return f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
