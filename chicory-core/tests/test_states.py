"""The worker state machine, table-first: every allowed move, and every other move rejected."""

from __future__ import annotations

import itertools

import pytest

from chicory.errors import IllegalTransitionError
from chicory.worker.states import TERMINAL, TRANSITIONS, JobState, transition

ALLOWED = [
    (JobState.RECEIVED, JobState.RUNNING),
    (JobState.RECEIVED, JobState.DEAD),
    (JobState.RECEIVED, JobState.CANCELLED),
    (JobState.RECEIVED, JobState.DEFERRED),
    (JobState.RECEIVED, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.SUCCEEDED),
    (JobState.RUNNING, JobState.RETRYING),
    (JobState.RUNNING, JobState.FAILED),
    (JobState.RUNNING, JobState.CANCELLED),
]
ILLEGAL = [pair for pair in itertools.product(JobState, JobState) if pair not in ALLOWED]


def test_the_table_is_exactly_the_documented_one() -> None:
    declared = {(src, dst) for src, exits in TRANSITIONS.items() for dst in exits}
    assert declared == set(ALLOWED)
    assert set(TRANSITIONS) == set(JobState)


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=lambda s: s.value)
def test_allowed_transition_returns_the_target(current: JobState, target: JobState) -> None:
    assert transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transition_raises(current: JobState, target: JobState) -> None:
    with pytest.raises(IllegalTransitionError, match=f"from {current.value} to {target.value}"):
        transition(current, target)


def test_terminal_states_have_no_exits() -> None:
    assert {
        JobState.SUCCEEDED,
        JobState.RETRYING,
        JobState.FAILED,
        JobState.DEAD,
        JobState.CANCELLED,
        JobState.DEFERRED,
    } == TERMINAL
    for state in TERMINAL:
        with pytest.raises(IllegalTransitionError, match="terminal"):
            transition(state, JobState.RUNNING)
