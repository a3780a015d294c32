"""Group joins: what a chord relies on (:mod:`chicory.workflow.joins`).

A result backend that implements :class:`~chicory.workflow.joins.GroupJoins` records each
member of a group under its index and, in the same atomic operation, tells whether the
group is complete, returning every member's record in member order.
"""

from __future__ import annotations

import anyio

from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import RESULTS_ENV, ResultsEnv
from chicory.workflow.joins import GroupJoins

__all__ = ["GroupJoinSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
JOINS = ("group_joins",)


async def _joins(env: ResultsEnv) -> GroupJoins:
    backend = await env.backend()
    assert isinstance(backend, GroupJoins)
    return backend


class GroupJoinSuite:
    """Subclass with an empty body (``class TestGroupJoins(GroupJoinSuite): pass``)."""

    @guarantee("join.completes", MUST, env=RESULTS_ENV, requires=JOINS)
    async def test_completes(self, env: ResultsEnv) -> None:
        """MUST return None until every member of a group is recorded, then every member's
        record in member order (whatever order they were recorded in)."""
        backend = await _joins(env)
        group = env.task_id("group")
        for index in (2, 0):
            got = await backend.join(group, index, 3, b"m%d" % index, ttl=60)
            assert got is None, f"a group of 3 with {index} recorded returned {got!r}"
        got = await backend.join(group, 1, 3, b"m1", ttl=60)
        assert got == [b"m0", b"m1", b"m2"], f"the complete group of 3 returned {got!r}"

    @guarantee("join.member_once", MUST, env=RESULTS_ENV, requires=JOINS)
    async def test_member_once(self, env: ResultsEnv) -> None:
        """MUST count a member recorded twice (a redelivered step) once, keeping its latest
        record, and return the complete group again to a join made after it completed."""
        backend = await _joins(env)
        group = env.task_id("group")
        assert await backend.join(group, 0, 2, b"first", ttl=60) is None
        again = await backend.join(group, 0, 2, b"again", ttl=60)
        assert again is None, f"member 0 recorded twice completed a group of 2: {again!r}"
        assert await backend.join(group, 1, 2, b"one", ttl=60) == [b"again", b"one"]
        late = await backend.join(group, 1, 2, b"one", ttl=60)
        assert late == [b"again", b"one"], f"a join after completion returned {late!r}"

    @guarantee("join.atomic", MUST, env=RESULTS_ENV, requires=JOINS)
    async def test_atomic(self, env: ResultsEnv) -> None:
        """MUST, of the distinct members of a group joined concurrently, return the
        complete group to exactly one."""
        backend = await _joins(env)
        size = 20
        for _ in range(5):
            group = env.task_id("group")
            complete: list[int] = []

            async def join(index: int, group: str = group, complete: list[int] = complete) -> None:
                if await backend.join(group, index, size, b"%d" % index, ttl=60) is not None:
                    complete.append(index)

            async with anyio.create_task_group() as tg:
                for index in range(size):
                    tg.start_soon(join, index)
            assert len(complete) == 1, (
                f"{size} members joined at once: {len(complete)} joins saw the group complete "
                f"(members {sorted(complete)}); exactly one must, or what follows runs "
                f"{len(complete)} times (or never)"
            )

    @guarantee("join.groups_apart", MUST, env=RESULTS_ENV, requires=JOINS)
    async def test_groups_apart(self, env: ResultsEnv) -> None:
        """MUST keep the members of different groups apart."""
        backend = await _joins(env)
        first, second = env.task_id("first"), env.task_id("second")
        assert await backend.join(first, 0, 2, b"a", ttl=60) is None
        got = await backend.join(second, 1, 2, b"b", ttl=60)
        assert got is None, f"member 1 of another group completed this one: {got!r}"

    @guarantee("join.expires", SHOULD, env=RESULTS_ENV, requires=JOINS)
    async def test_expires(self, env: ResultsEnv) -> None:
        """SHOULD forget a group once its ttl has passed since its last join."""
        backend = await _joins(env)
        group = env.task_id("group")
        assert await backend.join(group, 0, 2, b"old", ttl=0.2) is None
        await anyio.sleep(0.5)
        got = await backend.join(group, 1, 2, b"new", ttl=60)
        assert got is None, f"a member recorded before the ttl ran out still counts: {got!r}"
