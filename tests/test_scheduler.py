"""Periodic tasks: declared on the app, fired by the scheduler on a clock the tests move.

The scheduler reads time from a :class:`~chicory.clock.VirtualClock`, so these tests fire
schedules across the 2026 daylight-saving changes of Europe/Paris (spring forward on
29 March at 02:00 CET, fall back on 25 October at 03:00 CEST) without waiting; two
schedulers share one real Redis and enqueue each fire once; a scheduler restarted after a gap
follows the schedule's missed-fire policy.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

from chicory import Chicory
from chicory.clock import VirtualClock
from chicory.errors import ArgumentValidationError, CapabilityError, ConfigurationError
from chicory.scheduling import records
from chicory.scheduling.runner import Fire, Scheduler
from chicory_redis.broker import RedisBroker

PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> datetime:
    """An aware-UTC time from ISO text without zone (``2026-03-29T01:00``)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def clock_at(moment: datetime) -> VirtualClock:
    return VirtualClock(offset=moment.timestamp() - time.time())


def paris(fires: list[Fire]) -> list[str]:
    return [f.at.astimezone(PARIS).strftime("%m-%d %H:%M%z") for f in fires]


def make_app(url: str = "memory://") -> Chicory:
    app = Chicory(url, url if url != "memory://" else "memory://", load_entry_points=True)

    @app.periodic(cron="30 2 * * *", tz="Europe/Paris", args=("daily",), name="daily")
    @app.periodic(cron="*/30 * * * *", tz="Europe/Paris", args=("half-hourly",), name="halves")
    @app.periodic(every=timedelta(minutes=20), args=("interval",), name="every-20")
    @app.task(name="reports.build")
    async def build(kind: str) -> str:
        return kind

    return app


async def walk(
    scheduler: Scheduler, clock: VirtualClock, until: datetime, step: timedelta
) -> list[Fire]:
    """Tick the scheduler every ``step`` of virtual time up to ``until``."""
    fires = await scheduler.tick()
    while scheduler.now() + step <= until:
        clock.advance(step.total_seconds())
        fires += await scheduler.tick()
    return fires


@pytest.fixture
async def memory_app() -> AsyncIterator[Chicory]:
    app = make_app()
    async with app:
        yield app


async def test_spring_forward_in_paris(memory_app: Chicory) -> None:
    clock = clock_at(at("2026-03-28T23:55"))
    scheduler = Scheduler(memory_app, clock=clock)
    fires = await walk(scheduler, clock, at("2026-03-29T02:35"), timedelta(minutes=5))
    by = {name: [f for f in fires if f.schedule == name] for name in ("daily", "halves")}
    # 02:30 does not exist that night: it fires once, shifted by the gap, at 03:30 CEST.
    assert paris(by["daily"]) == ["03-29 03:30+0200"]
    # 02:00 shifted lands on 03:00, 02:30 on 03:30: each instant fires once.
    assert paris(by["halves"]) == [
        "03-29 01:00+0100",
        "03-29 01:30+0100",
        "03-29 03:00+0200",
        "03-29 03:30+0200",
        "03-29 04:00+0200",
        "03-29 04:30+0200",
    ]
    assert all(f.enqueued for f in fires)
    ids = [f.task_id for f in fires]
    assert len(set(ids)) == len(ids)
    assert "daily@2026-03-29T01:30:00Z" in ids
    assert (await memory_app.broker.counts("default")).ready == len(fires)


async def test_fall_back_in_paris(memory_app: Chicory) -> None:
    clock = clock_at(at("2026-10-24T23:25"))
    scheduler = Scheduler(memory_app, clock=clock)
    fires = await walk(scheduler, clock, at("2026-10-25T02:05"), timedelta(minutes=5))
    by = {name: [f for f in fires if f.schedule == name] for name in ("daily", "halves")}
    # 02:30 happens twice that night: it fires once, the first time (summer time).
    assert paris(by["daily"]) == ["10-25 02:30+0200"]
    # The repeated hour does not fire again.
    assert paris(by["halves"]) == [
        "10-25 01:30+0200",
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 03:00+0100",
    ]


async def test_an_interval_counts_elapsed_time_across_the_change(memory_app: Chicory) -> None:
    clock = clock_at(at("2026-03-29T00:05"))
    scheduler = Scheduler(memory_app, clock=clock, names=["every-20"])
    fires = await walk(scheduler, clock, at("2026-03-29T02:05"), timedelta(minutes=5))
    assert [f.at for f in fires] == [
        at("2026-03-29T00:20"),
        at("2026-03-29T00:40"),
        at("2026-03-29T01:00"),
        at("2026-03-29T01:20"),
        at("2026-03-29T01:40"),
        at("2026-03-29T02:00"),
    ]
    assert fires[0].task_id == "every-20@2026-03-29T00:20:00Z"


async def test_a_scheduler_that_falls_behind_fires_the_latest_once(memory_app: Chicory) -> None:
    clock = clock_at(at("2026-06-01T00:01"))
    scheduler = Scheduler(memory_app, clock=clock, names=["every-20"])
    assert await scheduler.tick() == []
    clock.advance(3600)  # asleep for three fires
    fires = await scheduler.tick()
    assert [(f.at, f.caught_up) for f in fires] == [(at("2026-06-01T01:00"), False)]


@pytest.mark.parametrize("policy", ["catch_up_last", "skip"])
async def test_a_restarted_scheduler_follows_the_missed_fire_policy(policy: str) -> None:
    app = Chicory("memory://", load_entry_points=True)

    @app.periodic(every=timedelta(hours=1), missed=policy)  # type: ignore[arg-type]
    @app.task(name="hourly")
    async def hourly() -> None: ...

    async with app:
        clock = clock_at(at("2026-06-01T09:59"))
        first = Scheduler(app, clock=clock)
        assert await first.tick() == []  # never fired before: starts with the next fire
        clock.advance(60)
        assert [f.at for f in await first.tick()] == [at("2026-06-01T10:00")]
        # The scheduler stops; nothing runs from 10:05 to 13:30.
        clock.advance(3.5 * 3600)
        second = Scheduler(app, clock=clock)
        fires = await second.tick()
        if policy == "catch_up_last":
            assert [(f.at, f.caught_up, f.enqueued) for f in fires] == [
                (at("2026-06-01T13:00"), True, True)
            ]
        else:
            assert fires == []
        clock.advance(1800)
        assert [(f.at, f.caught_up) for f in await second.tick()] == [
            (at("2026-06-01T14:00"), False)
        ]
        last = await records.last_fire(app.backend, "hourly")
        assert last == at("2026-06-01T14:00")
        ready = (await app.broker.counts("default")).ready
        assert ready == (3 if policy == "catch_up_last" else 2)


async def test_two_schedulers_on_redis_enqueue_each_fire_once() -> None:
    prefix = f"t-sched-{secrets.token_hex(4)}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    one, two = make_app(url), make_app(url)
    clock = clock_at(at("2026-03-28T23:58"))
    try:
        async with one, two:
            schedulers = [Scheduler(app, clock=clock, poll=0.01) for app in (one, two)]
            async with anyio.create_task_group() as group:
                for scheduler in schedulers:
                    group.start_soon(scheduler.run)
                end = at("2026-03-29T02:05")
                while datetime.fromtimestamp(clock.time(), UTC) < end:
                    clock.advance(60)
                    await anyio.sleep(0.02)
                await anyio.sleep(0.2)
                for scheduler in schedulers:
                    scheduler.stop()
            counts = await one.broker.counts("default")
            # 00:00 .. 02:00 UTC: halves 5, every-20 7, daily 1 (the shifted 02:30).
            assert counts.ready == 13, counts
    finally:
        broker = one.broker
        assert isinstance(broker, RedisBroker)
        async with broker:
            await broker.delete_queue("default")
            keys = [key async for key in broker.client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await broker.client.delete(*keys)


async def test_declaring_checks_the_schedule_at_once() -> None:
    app = Chicory("memory://", load_entry_points=True)

    @app.task(name="t")
    async def task(n: int) -> None: ...

    with pytest.raises(ConfigurationError, match="invalid cron expression '61 \\* \\* \\* \\*'"):
        app.schedule(task, cron="61 * * * *", args=(1,))
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        app.schedule(task, cron="0 2 * * *", tz="Mars/Olympus", args=(1,))
    with pytest.raises(ConfigurationError, match="one of them"):
        app.schedule(task, cron="0 2 * * *", every=60, args=(1,))
    with pytest.raises(ConfigurationError, match="every must be positive"):
        app.schedule(task, every=0, args=(1,))
    with pytest.raises(ArgumentValidationError):
        app.schedule(task, every=60, args=("not a number",))
    app.schedule(task, every=60, args=(1,))
    with pytest.raises(ConfigurationError, match="exists already"):
        app.schedule(task, every=120, args=(2,))
    app.schedule(task, every=120, args=(2,), name="t-2")
    assert sorted(app.schedules) == ["t", "t-2"]


async def test_a_broker_without_unique_enqueue_cannot_schedule() -> None:
    from test_unique import _PlainBroker

    app = Chicory(_PlainBroker(), "memory://", load_entry_points=True)

    @app.periodic(every=60)
    @app.task(name="t")
    async def task() -> None: ...

    async with app:
        with pytest.raises(CapabilityError, match=r"the scheduler needs .*'unique_enqueue'"):
            await Scheduler(app).tick()


async def test_a_fire_by_hand_is_a_unique_run_outside_the_schedules_fires() -> None:
    from test_unique import _PlainBroker

    from chicory.admin import Admin

    app = make_app()
    async with app:
        admin = Admin(app)
        first = await admin.fire("daily")
        again = await admin.fire("daily")
        assert first.enqueued
        assert (again.enqueued, again.task_id) == (False, first.task_id), "one run at a time"
        assert (await admin.fire("halves")).enqueued, "each schedule has its own key"
        assert (await app.broker.counts("default")).ready == 2
        assert await records.last_fire(await app.connected_backend(), "daily") is None
        with pytest.raises(ConfigurationError, match=r"no schedule named 'weekly' \(declared: "):
            await admin.fire("weekly")

    plain = Chicory(_PlainBroker(), "memory://", load_entry_points=True)

    @plain.periodic(every=60)
    @plain.task(name="t")
    async def task() -> None: ...

    async with plain:
        with pytest.raises(CapabilityError, match="unique_enqueue"):
            await Admin(plain).fire("t")


async def test_the_listing_carries_a_running_fires_progress(memory_app: Chicory) -> None:
    from chicory.admin import Admin
    from chicory.records import ResultRecord, TaskProgress, TaskState, encode_progress_record

    clock = clock_at(at("2026-12-06T10:00"))
    scheduler = Scheduler(memory_app, clock=clock, names=["every-20"])
    await scheduler.tick()
    clock.advance(20 * 60)
    (fire,) = await scheduler.tick()
    record = ResultRecord(
        task_id=fire.task_id,
        task="reports.build",
        state=TaskState.STARTED,
        attempt=1,
        updated_at=fire.at,
    )
    backend = await memory_app.connected_backend()
    progress = TaskProgress(value=0.5, meta={"rows": 10})
    await backend.store(fire.task_id, encode_progress_record(record, progress), final=False, ttl=60)
    infos = {info.name: info for info in await Admin(memory_app).schedules(scheduler.now())}
    assert infos["every-20"].last_state == "STARTED"
    assert infos["every-20"].last_progress == progress
    assert infos["every-20"].to_json()["last_progress"] == {"value": 0.5, "meta": {"rows": 10}}
    assert infos["daily"].last_progress is None
    assert infos["daily"].to_json()["last_progress"] is None


def test_cron_needs_the_extra_and_importing_chicory_does_not_import_it() -> None:
    code = (
        "import sys\n"
        "import chicory, chicory.scheduling.schedule, chicory.scheduling.runner\n"
        "assert 'cronsim' not in sys.modules\n"
        "sys.modules['cronsim'] = None\n"
        "app = chicory.Chicory('memory://')\n"
        "@app.task(name='t')\n"
        "def t(): ...\n"
        "app.schedule(t, every=60)\n"
        "try:\n"
        "    app.schedule(t, cron='0 2 * * *', name='c')\n"
        "except chicory.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'chicory-core[scheduler]'" in done.stdout, done.stdout + done.stderr
