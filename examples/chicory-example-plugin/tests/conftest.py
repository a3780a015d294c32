"""The one fixture the conformance suite needs: how to open a fresh example broker."""

from __future__ import annotations

import pytest

from chicory.testing import BrokerHarness
from chicory_example_plugin.broker import ExampleBroker


@pytest.fixture
def chicory_broker_harness() -> BrokerHarness:
    """A new in-memory SQLite broker per test, with the lease and delivery limit asked for."""
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: ExampleBroker(
            lease_seconds=lease_seconds, max_deliveries=max_deliveries
        ),
        dead_letter_limits=lambda *, max_count, max_age: ExampleBroker(
            dead_letter_max_count=max_count, dead_letter_max_age=max_age
        ),
    )
