"""Workflows: chains, groups and chords of tasks, continued by the workers that run them.

See :mod:`chicory.workflow.canvas` for building and sending flows,
:mod:`chicory.workflow.results` for the handle of a group's results,
:mod:`chicory.workflow.blocking` for sending flows from synchronous code,
:mod:`chicory.workflow.driver` for what a worker does when a step settles, and
:mod:`chicory.workflow.joins` for the result-backend power a chord needs.
"""

from chicory.workflow.canvas import (
    Chain,
    Group,
    Signature,
    chain,
    chord,
    group,
)
from chicory.workflow.joins import GroupJoins
from chicory.workflow.results import GroupResult

__all__ = ["Chain", "Group", "GroupJoins", "GroupResult", "Signature", "chain", "chord", "group"]
