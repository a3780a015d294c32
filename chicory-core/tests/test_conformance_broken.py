"""The conformance suite can fail: deliberately broken brokers fail the guarantees they break.

Each broken broker (``broken_brokers.py``) is a thin wrapper around the memory broker with one
defect. The suite runs against it in a throw-away pytest project (``pytester``), exactly as a
plugin author would run it, and the test checks which guarantee ids failed. The unbroken
wrapper is the control: it passes the same selections (``test_conformance_control.py``), so
every failure is caused by the defect.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from selftests import run_broken_suite

from chicory.testing import GUARANTEES, SUITE_MODULES

pytest_plugins = ["pytester"]

for _module in SUITE_MODULES:
    importlib.import_module(_module)

BROKERS = Path(__file__).with_name("broken_brokers.py").read_text()

SUITES = """
from chicory.testing import (
    BrokerBasicsSuite, BrokerDeliverySuite, BrokerSettlementSuite, DeadLetterSuite, WorkerSuite,
)

class TestBasics(BrokerBasicsSuite):
    pass

class TestSettlement(BrokerSettlementSuite):
    pass

class TestDelivery(BrokerDeliverySuite):
    pass

class TestDeadLetters(DeadLetterSuite):
    pass

class TestWorker(WorkerSuite):
    pass
"""

# defect -> (harness, -k expression, guarantees that must fail)
CASES: dict[str, tuple[str, str, set[str]]] = {
    "noop_ack": ("timed", "ack_removes or ack_many", {"settle.ack_removes", "settle.ack_many"}),
    "lost_on_close": ("timed", "redeliver_on_close", {"delivery.redeliver_on_close"}),
    "lease_ignored": (
        "timed",
        "redeliver_on_lease_expiry or at_least_once_crash",
        {"delivery.redeliver_on_lease_expiry", "worker.at_least_once_crash"},
    ),
    "delays_ignored": (
        "timed",
        "delayed_not_before or nack_delay or retry_delay",
        {"delivery.delayed_not_before", "settle.nack_delay", "worker.retry_delay"},
    ),
    "duplicates": ("timed", "no_duplicates", {"delivery.no_duplicates"}),
    "extend_ignored": ("timed", "lease_extension", {"delivery.lease_extension"}),
    "lost_lease_unreported": (
        "timed",
        "ack_reports_lost_lease",
        {"delivery.ack_reports_lost_lease"},
    ),
    # A broker built with a 3 s lease that declares none: workers renew on the 10 s default.
    "lease_undeclared": (
        "slow3",
        "lease.declared or worker.lease_kept_alive",
        {"lease.declared", "worker.lease_kept_alive"},
    ),
    "lease_short": ("timed", "lease.duration", {"lease.duration"}),
    "extend_half": (
        "timed",
        "lease.late_renewal or worker.slow_renewal",
        {"lease.late_renewal", "worker.slow_renewal"},
    ),
    "lost_retry_publishes": ("timed", "lease.lost_retry", {"lease.lost_retry"}),
    "lost_nack_requeues": ("timed", "lease.lost_nack", {"lease.lost_nack"}),
    "lost_dead_letter_records": ("timed", "lease.lost_dead_letter", {"lease.lost_dead_letter"}),
    "fetch_closed_empty": ("timed", "fetch_after_close", {"delivery.fetch_after_close"}),
    "full_fetch_sleeps": ("timed", "fetch_waits_for_room", {"delivery.fetch_waits_for_room"}),
    "nack_to_front": ("timed", "nack_order", {"settle.nack_order"}),
    "replay_keeps_count": ("timed", "replay_fresh", {"deadletter.replay_fresh"}),
    "dead_letters_unbounded": (
        "timed",
        "max_count or max_age",
        {"deadletter.max_count", "deadletter.max_age"},
    ),
    "delete_keeps_delayed": ("timed", "cleanup.delete_queue", {"cleanup.delete_queue"}),
    "purge_noop": ("purge", "cleanup.purge", {"cleanup.purge"}),
    "sever_keeps": (
        "session",
        "redeliver_on_disconnect",
        {"session.redeliver_on_disconnect"},
    ),
    "session_times_out": ("session", "held_while_connected", {"session.held_while_connected"}),
    "stale_settle_acts": (
        "session",
        "stale_settle_reported",
        {"session.stale_settle_reported"},
    ),
    "loop_bound": ("timed", "new_event_loop", {"broker.new_event_loop"}),
    "count_stuck": ("timed", "redelivered_done_acked", {"worker.redelivered_done_acked"}),
}


def run_suites(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    defect: str,
    keyword: str,
    harness: str = "timed",
) -> tuple[set[str], set[str], pytest.RunResult]:
    """Run the suites on the wrapper with ``defect``; return the failed and passed ids."""
    return run_broken_suite(
        pytester, monkeypatch, defect, BROKERS, SUITES, "-k", keyword, harness=harness
    )


@pytest.mark.parametrize("defect", sorted(CASES))
def test_broken_broker_fails_the_named_guarantees(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    harness, keyword, expected = CASES[defect]
    failed, _, result = run_suites(pytester, monkeypatch, defect, keyword, harness)
    assert failed == expected, result.stdout.str()
    for gid in expected:
        level = GUARANTEES[gid].level.value
        result.stdout.fnmatch_lines(
            ["*- Chicory guarantee -*", f"{gid} ({level}) is violated: {level} *"]
        )
