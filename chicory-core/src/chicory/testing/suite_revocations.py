"""Revocation records: what cancelling a task relies on (:mod:`chicory.revocation`).

A result backend that implements :class:`~chicory.revocation.Revocations` records a revoked
task id for a TTL, lists the live records, and pushes each new one to every subscriber.
"""

from __future__ import annotations

import time

import anyio

from chicory.revocation import Revocations
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import RESULTS_ENV, ResultsEnv

__all__ = ["RevocationSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
REVOCATIONS = ("revocations",)
SLACK = 2.0  # seconds of clock difference tolerated between the backend and this process


async def _revocations(env: ResultsEnv) -> Revocations:
    backend = await env.backend()
    assert isinstance(backend, Revocations)
    return backend


class RevocationSuite:
    """Subclass with an empty body (``class TestRevocations(RevocationSuite): pass``)."""

    @guarantee("revocation.recorded", MUST, env=RESULTS_ENV, requires=REVOCATIONS)
    async def test_recorded(self, env: ResultsEnv) -> None:
        """MUST list a revoked task id with when its record expires, and no other id."""
        backend = await _revocations(env)
        revoked, other = env.task_id("revoked"), env.task_id("other")
        before = time.time()
        await backend.revoke(revoked, ttl=60)
        live = await backend.revocations()
        assert revoked in live, f"{revoked} was revoked but is not listed: {sorted(live)}"
        assert other not in live
        assert before + 60 - SLACK <= live[revoked] <= time.time() + 60 + SLACK, live[revoked]

    @guarantee("revocation.expires", MUST, env=RESULTS_ENV, requires=REVOCATIONS)
    async def test_expires(self, env: ResultsEnv) -> None:
        """MUST stop listing a revocation once its TTL has passed."""
        backend = await _revocations(env)
        task_id = env.task_id()
        await backend.revoke(task_id, ttl=0.2)
        assert task_id in await backend.revocations()
        await anyio.sleep(0.5)
        assert task_id not in await backend.revocations(), "listed after its TTL"

    @guarantee("revocation.pushed", MUST, env=RESULTS_ENV, requires=REVOCATIONS)
    async def test_pushed(self, env: ResultsEnv) -> None:
        """MUST push each revocation to a subscriber that subscribed before it."""
        backend = await _revocations(env)
        task_id = env.task_id()
        async with backend.watch_revocations() as pushes:
            await backend.revoke(task_id, ttl=60)
            with anyio.fail_after(5):
                async for pushed, expires_at in pushes:
                    if pushed == task_id:
                        assert expires_at > time.time() + 60 - SLACK, expires_at
                        break

    @guarantee("revocation.extended", SHOULD, env=RESULTS_ENV, requires=REVOCATIONS)
    async def test_extended(self, env: ResultsEnv) -> None:
        """SHOULD extend a revocation revoked again for longer, and never shorten one."""
        backend = await _revocations(env)
        task_id = env.task_id()
        await backend.revoke(task_id, ttl=0.3)
        await backend.revoke(task_id, ttl=60)
        await backend.revoke(task_id, ttl=0.3)
        await anyio.sleep(0.6)
        assert task_id in await backend.revocations(), "a later, shorter TTL shortened it"
