"""The control of ``test_conformance_broken.py``: the same wrapper, without a defect, passes.

This proves that each failure seen there comes from the defect, not from the wrapper or from
the way the suite is run. The selections of all cases that share a harness run together.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]


def _broken_module() -> Any:
    path = Path(__file__).with_name("test_conformance_broken.py")
    spec = importlib.util.spec_from_file_location("chicory_conformance_broken_cases", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BROKEN = _broken_module()
HARNESSES = sorted({harness for harness, _, _ in BROKEN.CASES.values()})


@pytest.mark.parametrize("harness", HARNESSES)
def test_the_unbroken_wrapper_passes_what_the_defects_fail(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, harness: str
) -> None:
    cases = [(k, ids) for h, k, ids in BROKEN.CASES.values() if h == harness]
    keyword = " or ".join(f"({k})" for k, _ in cases)
    expected = set().union(*(ids for _, ids in cases))
    failed, passed, result = BROKEN.run_suites(pytester, monkeypatch, "none", keyword, harness)
    assert not failed, result.stdout.str()
    assert expected <= passed, result.stdout.str()
