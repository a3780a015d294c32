"""The worker inbox: chained wake-ups, fan-out for slow work, close and cancellation."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import anyio
import anyio.abc

from chicory.broker import Delivery
from chicory.worker.inbox import Inbox


def _items(n: int) -> list[Delivery]:
    return [cast(Delivery, f"d{i}") for i in range(n)]


async def _runner(inbox: Inbox, name: int, taken: Counter[int], work: float | None) -> None:
    """Take deliveries as the worker's runners do: without waiting while some are there."""
    while True:
        delivery = inbox.get_nowait()
        if delivery is None and (delivery := await inbox.get()) is None:
            return
        taken[name] += 1
        if work is not None:
            await anyio.sleep(work)


async def _start_runners(
    tg: anyio.abc.TaskGroup, inbox: Inbox, taken: Counter[int], work: float | None
) -> None:
    """Start 8 runners and wait until every one is idle in ``inbox.get()``."""
    for name in range(8):
        tg.start_soon(_runner, inbox, name, taken, work)
    await anyio.wait_all_tasks_blocked()


async def _take(inbox: Inbox, got: list[Any]) -> None:
    got.append(await inbox.get())


async def test_quick_work_is_taken_by_the_runner_that_is_awake() -> None:
    inbox, taken = Inbox(), Counter[int]()
    async with anyio.create_task_group() as tg:
        await _start_runners(tg, inbox, taken, None)
        inbox.put_many(_items(100))
        await anyio.wait_all_tasks_blocked()
        inbox.close()
    assert sum(taken.values()) == 100
    # No wake-up per item: one runner runs the whole batch, since it never suspends.
    assert len(taken) == 1


async def test_slow_work_fans_out_to_every_idle_runner() -> None:
    inbox, taken = Inbox(), Counter[int]()
    async with anyio.create_task_group() as tg:
        await _start_runners(tg, inbox, taken, 0.05)
        inbox.put_many(_items(8))
        await anyio.wait_all_tasks_blocked()  # every runner is now asleep in its work
        assert len(inbox) == 0
        assert taken == Counter(dict.fromkeys(range(8), 1))
        inbox.close()


async def test_close_stops_idle_runners_after_the_rest_is_drained() -> None:
    inbox = Inbox()
    got: list[Any] = []
    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(_take, inbox, got)
        await anyio.wait_all_tasks_blocked()
        inbox.close()
    assert got == [None, None, None]
    inbox.put_many(_items(1))
    assert await inbox.get() == "d0"  # what is left is still handed out after close
    assert await inbox.get() is None


async def test_a_cancelled_wake_up_is_passed_on() -> None:
    inbox = Inbox()
    got: list[Any] = []
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as doomed:
            doomed.start_soon(_take, inbox, got)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(_take, inbox, got)
            await anyio.wait_all_tasks_blocked()
            inbox.put_many(_items(1))  # wakes the first idle runner, the doomed one ...
            doomed.cancel_scope.cancel()  # ... which is cancelled before it resumes
        await anyio.wait_all_tasks_blocked()
        assert got == ["d0"]  # the other runner got the wake-up and the item
        inbox.close()
    assert got == ["d0", None]


async def test_fan_out_starts_every_idle_runner_in_one_loop_turn() -> None:
    inbox, taken = Inbox(), Counter[int]()
    async with anyio.create_task_group() as tg:
        await _start_runners(tg, inbox, taken, 0.05)
        inbox.put_many(_items(8))
        inbox.fan_out()
        await anyio.lowlevel.checkpoint()  # one turn of the event loop
        assert sum(taken.values()) == 8
        inbox.close()


async def test_without_fan_out_runners_start_one_loop_turn_apart() -> None:
    inbox, taken = Inbox(), Counter[int]()
    async with anyio.create_task_group() as tg:
        await _start_runners(tg, inbox, taken, 0.05)
        inbox.put_many(_items(8))
        await anyio.lowlevel.checkpoint()
        assert sum(taken.values()) < 8
        await anyio.wait_all_tasks_blocked()
        assert sum(taken.values()) == 8
        inbox.close()


async def test_quiet_means_nothing_waits_and_a_runner_is_idle() -> None:
    inbox, got = Inbox(), list[Any]()
    assert not inbox.quiet()  # no idle runner to take the next delivery
    async with anyio.create_task_group() as tg:
        tg.start_soon(_take, inbox, got)
        await anyio.wait_all_tasks_blocked()
        assert inbox.quiet()
        inbox.put_many(_items(2))
        assert not inbox.quiet()  # deliveries wait for a runner
        await anyio.wait_all_tasks_blocked()
        assert got == ["d0"]
        assert len(inbox) == 1
        assert not inbox.quiet()
        inbox.close()


async def test_get_nowait_takes_in_order_and_passes_the_wake_up_on() -> None:
    inbox, got = Inbox(), list[Any]()
    assert inbox.get_nowait() is None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_take, inbox, got)
        await anyio.wait_all_tasks_blocked()
        inbox._items.extend(_items(2))  # arrived without a wake-up (as between fetches)
        assert inbox.get_nowait() == "d0"  # more remain: the idle taker is woken for them
        await anyio.wait_all_tasks_blocked()
    assert got == ["d1"]
    assert inbox.get_nowait() is None
