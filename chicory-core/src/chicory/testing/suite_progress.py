"""Progress feeds: what ``get(on_progress=...)`` relies on (:mod:`chicory.progress`).

A result backend that implements :class:`~chicory.progress.ProgressFeed` stores a task's
progress as its non-final record and pushes it to every subscriber of that task id.
"""

from __future__ import annotations

import anyio

from chicory.backend import ResultBackend
from chicory.progress import ProgressFeed
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import RESULTS_ENV, ResultsEnv

__all__ = ["ProgressFeedSuite"]

MUST = Level.MUST
FEEDS = ("progress_feed",)


async def _feed(env: ResultsEnv) -> tuple[ResultBackend, ProgressFeed]:
    """A fresh backend, as a result backend and as a progress feed (one object)."""
    backend = await env.backend()
    assert isinstance(backend, ProgressFeed)
    return backend, backend


class ProgressFeedSuite:
    """Subclass with an empty body (``class TestProgressFeed(ProgressFeedSuite): pass``)."""

    @guarantee("progress.pushed", MUST, env=RESULTS_ENV, requires=FEEDS)
    async def test_pushed(self, env: ResultsEnv) -> None:
        """MUST push each progress record of a task, in order, to a subscriber that
        subscribed before it, and none of another task."""
        _, backend = await _feed(env)
        task_id, other = env.task_id("watched"), env.task_id("other")
        async with backend.watch_progress(task_id) as updates:
            await backend.store_progress(other, b"not yours", ttl=60)
            for step in (b"one", b"two", b"three"):
                await backend.store_progress(task_id, step, ttl=60)
            got: list[bytes] = []
            with anyio.move_on_after(5):
                async for data in updates:
                    got.append(data)
                    if len(got) == 3:
                        break
        assert got == [b"one", b"two", b"three"], f"the subscriber received {got!r}"

    @guarantee("progress.stored", MUST, env=RESULTS_ENV, requires=FEEDS)
    async def test_stored(self, env: ResultsEnv) -> None:
        """MUST store a progress record as the task's non-final record (get returns it,
        wait does not), and never over a final record."""
        backend, feed = await _feed(env)
        task_id = env.task_id()
        await feed.store_progress(task_id, b"halfway", ttl=60)
        assert await backend.get(task_id) == b"halfway", "the progress record was not stored"
        assert await backend.wait(task_id, 0.1) is None, "a progress record woke a waiter"
        await backend.store(task_id, b"result", final=True, ttl=60)
        await feed.store_progress(task_id, b"late", ttl=60)
        assert await backend.get(task_id) == b"result", "a late progress record hid the result"
