"""The ``chicory`` pytest plugin, loaded automatically through the ``pytest11`` entry point.

It adds no tests by itself: conformance tests run only where a test module subclasses a
suite. It provides the ``chicory_guarantee`` marker, fallback harness fixtures that fail
with instructions when the author has not written theirs, a "Chicory guarantee" section in
every failure report naming the broken promise, and a per-guarantee summary table.

With plugin autoloading disabled (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), load it with
``-p chicory``.
"""

from __future__ import annotations

from typing import Final, NoReturn

import pytest

from chicory.testing.guarantees import MARKER
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


@pytest.fixture
def chicory_broker_harness() -> NoReturn:
    """Fallback that fails with instructions; override it in your conftest.py."""
    pytest.fail(MISSING_BROKER_HARNESS, pytrace=False)


@pytest.fixture
def chicory_result_backend_harness() -> NoReturn:
    """Fallback that fails with instructions; override it in your conftest.py."""
    pytest.fail(MISSING_RESULT_BACKEND_HARNESS, pytrace=False)
