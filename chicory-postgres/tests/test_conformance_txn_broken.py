"""The transactional-enqueue guarantees can fail: PostgreSQL brokers with one defect each.

Each broken broker is the real PostgreSQL broker with its ``publish_within`` (or
``publish_unique_within``) wrong in one way, run through the ``TransactionalEnqueueSuite``
in a throw-away pytest project (``pytester``), as a plugin author would run it; the test
checks which guarantee ids failed. The control, the same subclass without a defect, passes
every one; a harness without ``transactions`` makes them ERRORs, and ``chicory conformance``
by URL finds the plugin's transactions and runs them all.
"""

from __future__ import annotations

import io

import pytest
from selftests import run_broken_suite

from chicory.testing.runner import run_conformance

pytest_plugins = ["pytester"]

BROKERS = """
import os

import attrs
import psycopg
import pytest
from chicory.testing import BrokerHarness
from chicory_postgres.broker import PostgresBroker
from chicory_postgres.conformance import psycopg_transaction


def defect():
    return os.environ["CHICORY_TEST_DEFECT"]


class Broken(PostgresBroker):
    async def publish_within(self, connection, queue, messages):
        if defect() == "outside":  # on its own connection: committed at once
            return await self.publish_many(queue, messages)
        if defect() == "accepts_anything" and not isinstance(connection, psycopg.AsyncConnection):
            return await self.publish_many(queue, messages)
        if defect() == "split_batches" and len(messages) > 1:
            first = await super().publish_within(connection, queue, messages[:1])
            return first + await self.publish_many(queue, messages[1:])
        if defect() == "delay_dropped":  # checked, then ignored
            self._publish_params(queue, messages)
            messages = [attrs.evolve(m, not_before=None) for m in messages]
        if defect() == "doubled":
            await super().publish_within(connection, queue, messages)
        if defect() == "refused_batch_half_written":
            aware = [m for m in messages if m.not_before is None or m.not_before.tzinfo]
            if len(aware) < len(messages):
                await super().publish_within(connection, queue, aware)
        return await super().publish_within(connection, queue, messages)

    async def publish_unique_within(self, connection, queue, message, **claim):
        if defect() == "unique_outside":  # the key is claimed for good at once
            return await self.publish_unique(queue, message, **claim)
        return await super().publish_unique_within(connection, queue, message, **claim)


async def purge(broker, queues):
    await broker.connect()
    for queue in queues:
        await broker.delete_queue(queue)


@pytest.fixture
def chicory_broker_harness():
    url = os.environ["CHICORY_TEST_TXN_URL"]
    return BrokerHarness(
        factory=lambda *, lease_seconds, max_deliveries: Broken.from_url(
            url, lease_seconds=lease_seconds, max_deliveries=max_deliveries, poll_interval=0.5
        ),
        purge=purge,
        transactions=None if os.environ.get("CHICORY_TEST_HARNESS") else psycopg_transaction,
        patience=5.0,
    )
"""

SUITES = """
from chicory.testing import TransactionalEnqueueSuite

class TestTransactions(TransactionalEnqueueSuite):
    pass
"""

CASES = {
    "outside": {
        "txn.foreign_connection_refused",
        "txn.rollback_discards",
        "txn.invisible_until_commit",
        "txn.batch_all_or_nothing",
        "txn.delayed",
        "txn.worker_runs_committed",
    },
    "split_batches": {"txn.batch_all_or_nothing", "txn.worker_runs_committed"},
    "refused_batch_half_written": {"txn.batch_all_or_nothing"},
    "delay_dropped": {"txn.delayed"},
    "doubled": {
        "txn.commit_delivers_once",
        "txn.invisible_until_commit",
        "txn.batch_all_or_nothing",
        "txn.delayed",
        "txn.worker_runs_committed",
    },
    "unique_outside": {"txn.unique_rollback_frees_key"},
    "accepts_anything": {"txn.foreign_connection_refused"},
}

ALL = {
    "txn.rollback_discards",
    "txn.commit_delivers_once",
    "txn.invisible_until_commit",
    "txn.batch_all_or_nothing",
    "txn.delayed",
    "txn.unique_rollback_frees_key",
    "txn.foreign_connection_refused",
    "txn.worker_runs_committed",
}


@pytest.fixture
def broken_env(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> pytest.MonkeyPatch:
    """The inner project's brokers work in this session's database."""
    monkeypatch.setenv("CHICORY_TEST_TXN_URL", postgres_url)
    return monkeypatch


@pytest.mark.parametrize("defect", sorted(CASES))
def test_a_broken_transactional_enqueue_fails_the_named_guarantees(
    pytester: pytest.Pytester, broken_env: pytest.MonkeyPatch, defect: str
) -> None:
    failed, _, result = run_broken_suite(pytester, broken_env, defect, BROKERS, SUITES)
    assert failed == CASES[defect], (failed, result.stdout.str())


def test_the_unbroken_subclass_passes_every_transactional_guarantee(
    pytester: pytest.Pytester, broken_env: pytest.MonkeyPatch
) -> None:
    failed, passed, result = run_broken_suite(pytester, broken_env, "none", BROKERS, SUITES)
    assert not failed, result.stdout.str()
    assert passed == ALL, result.stdout.str()


def test_a_harness_without_transactions_is_an_error(
    pytester: pytest.Pytester, broken_env: pytest.MonkeyPatch
) -> None:
    """A broker declaring the capability whose harness cannot open transactions is not
    skipped: every guarantee that publishes in a transaction is an ERROR naming the fix."""
    failed, passed, result = run_broken_suite(
        pytester, broken_env, "none", BROKERS, SUITES, harness="bare"
    )
    assert passed == {"txn.foreign_connection_refused"}, result.stdout.str()
    assert failed == ALL - passed, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors") == len(ALL) - 1, outcomes
    result.stdout.fnmatch_lines(["*must give BrokerHarness.transactions*"])


def test_chicory_conformance_checks_them_by_url(postgres_url: str) -> None:
    """``chicory conformance postgresql://...`` opens its transactions through the plugin's
    ``conformance_transactions``: every transactional guarantee runs, and holds."""
    out = io.StringIO()
    code = run_conformance(postgres_url, keyword="txn.", out=out)
    text = out.getvalue()
    assert code == 0, text
    rows = {line.split()[1]: line for line in text.splitlines() if " txn." in line}
    assert set(rows) == ALL, text
    assert all(" pass " in row for row in rows.values()), text
