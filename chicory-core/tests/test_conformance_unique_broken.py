"""The unique-enqueue guarantees can fail: memory brokers with one defect each fail them.

Like ``test_conformance_delayed_broken.py``: each broken broker runs the ``UniqueSuite`` in a
throw-away pytest project (``pytester``), and the test checks which guarantee ids failed. The
control, the same subclass without a defect, passes every one.
"""

from __future__ import annotations

import pytest
from selftests import run_broken_suite

pytest_plugins = ["pytester"]

BROKERS = """
import os

import anyio
import pytest
from chicory.testing import BrokerHarness
from chicory.unique import UniqueClaim
from chicory_memory.broker import MemoryBroker


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(MemoryBroker):
    async def publish_unique(self, queue, message, *, key, holder, hold, keep=0.0):
        if defect() == "global_keys":  # one claim per key, whatever the queue
            claims = self.__dict__.setdefault("global_claims", {})
            if key in claims:
                return UniqueClaim(message_id=None, holder=claims[key])
            claims[key] = holder
        if defect() == "no_expiry":
            hold = 10 * 3600
        if defect() == "racy":
            current = await self.unique_holder(queue, key)
            await anyio.sleep(0)
            if current is not None:
                return UniqueClaim(message_id=None, holder=current)
            await super().release_unique(queue, key, await self.unique_holder(queue, key) or "")
        claim = await super().publish_unique(
            queue, message, key=key, holder=holder, hold=hold, keep=keep
        )
        if defect() == "publishes_duplicates" and not claim.published:
            await self.publish(queue, message.body, message.headers, not_before=message.not_before)
        return claim

    async def release_unique(self, queue, key, holder):
        if defect() == "release_any_holder":
            holder = await super().unique_holder(queue, key) or holder
        if defect() == "release_ignores_keep":
            held = self._store.queues.get(queue)
            claim = held.claims.get(key) if held is not None else None
            if claim is not None and claim.holder == holder:
                del held.claims[key]
                return True
        return await super().release_unique(queue, key, holder)

    async def delete_queue(self, queue):
        kept = dict(self._store.queue(queue).claims)
        await super().delete_queue(queue)
        if defect() == "claims_outlive_queue":
            self._store.queue(queue).claims.update(kept)


@pytest.fixture
def chicory_broker_harness():
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: Broken(
            lease_seconds=lease_seconds, max_deliveries=max_deliveries
        ),
        patience=2.0,
    )
"""

SUITES = """
from chicory.testing import UniqueSuite

class TestUnique(UniqueSuite):
    pass
"""

CASES = {
    "publishes_duplicates": {"unique.once_per_key", "unique.atomic"},
    "racy": {"unique.atomic"},
    "release_any_holder": {"unique.release", "unique.per_queue"},
    "release_ignores_keep": {"unique.keep_outlives_release"},
    "no_expiry": {"unique.hold_expires"},
    "claims_outlive_queue": {"unique.deleted_with_queue"},
    "global_keys": {
        "unique.per_queue",
        "unique.release",
        "unique.hold_expires",
        "unique.keep_outlives_release",
        "unique.deleted_with_queue",
    },
}

ALL = {
    "unique.once_per_key",
    "unique.atomic",
    "unique.held_through_delivery",
    "unique.release",
    "unique.hold_expires",
    "unique.keep_outlives_release",
    "unique.per_queue",
    "unique.deleted_with_queue",
}


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_unique_enqueue_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, monkeypatch, defect, BROKERS, SUITES)
    assert failed == CASES[defect], (failed, result.stdout.str())


def test_the_unbroken_subclass_passes_every_unique_guarantee(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, monkeypatch, "none", BROKERS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()
