"""The same suites under other configurations: a body limit, and a database file on disk.

A class-level ``chicory_broker_harness`` fixture overrides the one in ``conftest.py`` for that
class only, so one test module can prove several configurations of a broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chicory.broker import Broker
from chicory.testing import (
    BrokerBasicsSuite,
    BrokerDeliverySuite,
    BrokerHarness,
    BrokerSettlementSuite,
)
from chicory_example_plugin.broker import ExampleBroker


class TestBodyLimit(BrokerBasicsSuite):
    @pytest.fixture
    def chicory_broker_harness(self) -> BrokerHarness:
        def small(*, lease_seconds: float, max_deliveries: int | None) -> Broker:
            return ExampleBroker(
                lease_seconds=lease_seconds, max_deliveries=max_deliveries, max_body_bytes=4096
            )

        return BrokerHarness(factory=small)


@pytest.fixture
def file_harness(tmp_path: Path) -> BrokerHarness:
    url = f"example://{tmp_path / 'queue.sqlite'}"

    def on_disk(*, lease_seconds: float, max_deliveries: int | None) -> Broker:
        return ExampleBroker.from_url(
            url, lease_seconds=lease_seconds, max_deliveries=max_deliveries
        )

    return BrokerHarness(factory=on_disk)


class TestFileSettlement(BrokerSettlementSuite):
    @pytest.fixture
    def chicory_broker_harness(self, file_harness: BrokerHarness) -> BrokerHarness:
        return file_harness


class TestFileDelivery(BrokerDeliverySuite):
    @pytest.fixture
    def chicory_broker_harness(self, file_harness: BrokerHarness) -> BrokerHarness:
        return file_harness
