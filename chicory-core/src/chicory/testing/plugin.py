"""The ``chicory`` pytest plugin, loaded automatically through the ``pytest11`` entry point.

It adds no tests by itself: conformance tests run only where a test module subclasses a
suite. It provides the ``chicory_guarantee`` marker, fallback harness fixtures that fail
with instructions when the author has not written theirs, the set-up check that makes a test
that cannot run here an ERROR (and one whose capability is not declared a skip) before it
starts, a "Chicory guarantee" section in every failure report naming the broken promise,
and a per-guarantee summary table with root causes first.

With plugin autoloading disabled (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), load it with
``-p chicory``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Final, NoReturn

import pytest

from chicory.testing.guarantees import MARKER, READY_CHECKS
from chicory.testing.report import ResultCollector

MISSING_BROKER_HARNESS: Final = """\
this test comes from a Chicory conformance suite and needs a broker harness, but no \
fixture named 'chicory_broker_harness' is defined. Add one to your conftest.py, for example:

    import pytest
    from chicory.testing import BrokerHarness
    from my_broker import MyBroker

    @pytest.fixture
    def chicory_broker_harness() -> BrokerHarness:
        return BrokerHarness(
            factory=lambda *, lease_seconds, max_deliveries: MyBroker(
                lease_seconds=lease_seconds, max_deliveries=max_deliveries
            ),
        )

See docs/conformance.md for every harness option."""

MISSING_RESULT_BACKEND_HARNESS: Final = """\
this test comes from a Chicory conformance suite and needs a result backend harness, but no \
fixture named 'chicory_result_backend_harness' is defined. Add one to your conftest.py, for \
example:

    import pytest
    from chicory.testing import ResultBackendHarness
    from my_backend import MyResultBackend

    @pytest.fixture
    def chicory_result_backend_harness() -> ResultBackendHarness:
        return ResultBackendHarness(factory=lambda: MyResultBackend())

See docs/conformance.md for every harness option."""


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and the result collector."""
    config.addinivalue_line(
        "markers", f"{MARKER}(id, level): a Chicory conformance test and the guarantee it checks"
    )
    config.pluginmanager.register(ResultCollector(summary=True), "chicory-conformance-results")


def pytest_itemcollected(item: pytest.Item) -> None:
    """Let ``-k`` select conformance tests by guarantee id (``-k settle.ack_removes``)."""
    marker = item.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        item.extra_keyword_matches.add(str(marker.args[0]))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """After the fixtures are set up, run a conformance test's readiness check.

    A missing capability skips the test here, and a missing prerequisite fails its set-up:
    pytest then reports an ERROR (the guarantee was not checked), not a failure.
    """
    yield
    marker = item.get_closest_marker(MARKER)
    if marker is None or not marker.args or marker.args[0] not in READY_CHECKS:
        return
    fixture, ready = READY_CHECKS[marker.args[0]]
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    if fixture in funcargs:
        ready(funcargs[fixture])


@pytest.fixture
def chicory_broker_harness() -> NoReturn:
    """Fallback that fails with instructions; override it in your conftest.py."""
    pytest.fail(MISSING_BROKER_HARNESS, pytrace=False)


@pytest.fixture
def chicory_result_backend_harness() -> NoReturn:
    """Fallback that fails with instructions; override it in your conftest.py."""
    pytest.fail(MISSING_RESULT_BACKEND_HARNESS, pytrace=False)
