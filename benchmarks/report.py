"""Turns the measurements of one harness run into the Markdown tables of docs/benchmarks.md.

Only the part between ``<!-- results:start -->`` and ``<!-- results:end -->`` is generated;
the rest of the page (method, notes, where the time goes) is kept as written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import Measurement, Settings, Stat, summarize

__all__ = ["END", "START", "Results", "render", "write_report"]

_CORES = os.cpu_count() or 1

START = "<!-- results:start -->"
END = "<!-- results:end -->"


@dataclass
class Results:
    """Every measurement of one harness run, by benchmark name (one per repetition)."""

    runs: dict[str, list[Measurement]]
    machine: Mapping[str, str]
    settings: Settings
    elapsed: float

    def stat(self, name: str, field: str) -> Stat:
        """Median and range of ``field`` of benchmark ``name`` over the repetitions."""
        return summarize([m.values[field] for m in self.runs[name]])

    def has(self, name: str) -> bool:
        """Whether benchmark ``name`` ran."""
        return bool(self.runs.get(name))


def _num(value: float) -> str:
    if value >= 99.5:
        return f"{value:,.0f}"
    if value >= 9.995:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(stat: Stat) -> str:
    if len(stat.values) == 1:
        return _num(stat.median)
    return f"{_num(stat.median)} ({_num(stat.low)}-{_num(stat.high)})"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


Row = tuple[str, str, str, str]


def _chicory_rows(r: Results) -> list[Row]:
    xadd = r.stat("floor", "xadd")
    xread = r.stat("floor", "xreadgroup_xack")
    rows: list[Row] = []
    for mode in ("at_least_once", "at_most_once"):
        name = f"redis.drain_{mode}"
        enqueue = r.stat(name, "enqueue")
        e2e = r.stat(name, "e2e")
        label = mode.replace("_", "-")
        ok_e2e = e2e.median >= 25_000 and e2e.ratio(xread) >= 0.25
        rows.append(
            (
                f"drain {label}: enqueue (`delay_many`), tasks/s",
                _cell(enqueue),
                f"{enqueue.ratio(xadd):.0%} of XADD floor",
                f"≥ 50% of floor: {_verdict(enqueue.ratio(xadd) >= 0.5)}",
            )
        )
        target = (
            f"≥ 25,000/s and ≥ 25% of floor: {_verdict(ok_e2e)}" if mode == "at_least_once" else "—"
        )
        rows.append(
            (
                f"drain {label}: end to end, tasks/s",
                _cell(e2e),
                f"{e2e.ratio(xread):.0%} of XREADGROUP+XACK floor",
                target,
            )
        )
    for mode in ("at_least_once", "at_most_once"):
        rows.append(
            (
                f"drain {mode.replace('_', '-')}: worker CPU per task, us",
                _cell(r.stat(f"redis.drain_{mode}", "cpu_us")),
                "",
                "—",
            )
        )
    rt = r.stat("redis.roundtrip", "rate")
    rows.append(
        (
            f"round trip: {r.settings.roundtrip_tasks:,} x `add`, results awaited, tasks/s",
            _cell(rt),
            "",
            f"≥ 10,000/s: {_verdict(rt.median >= 10_000)}",
        )
    )
    for field in ("p50_ms", "p99_ms"):
        rows.append(
            (
                f"round trip: {field[:3]} latency (burst), ms",
                _cell(r.stat("redis.roundtrip", field)),
                "",
                "—",
            )
        )
    p50 = r.stat("redis.latency", "p50_ms")
    p99 = r.stat("redis.latency", "p99_ms")
    rate = r.settings.latency_rate
    floor = r.has("latency_floor")
    rows.append(
        (
            f"latency at {rate:.0f} tasks/s: p50, ms",
            _cell(p50),
            f"floor {_cell(r.stat('latency_floor', 'p50_ms'))}" if floor else "",
            f"≤ 1 ms: {_verdict(p50.median <= 1)}",
        )
    )
    rows.append(
        (
            f"latency at {rate:.0f} tasks/s: p99, ms",
            _cell(p99),
            f"floor {_cell(r.stat('latency_floor', 'p99_ms'))}" if floor else "",
            f"≤ 5 ms: {_verdict(p99.median <= 5)}",
        )
    )
    rows.append(
        (
            "worker peak RSS during the suite, MiB",
            _cell(r.stat("redis.worker_rss", "peak_mib")),
            "",
            "—",
        )
    )
    return rows


def _memory_rows(r: Results) -> list[Row]:
    rows: list[Row] = []
    for mode in ("at_least_once", "at_most_once"):
        name = f"memory.drain_{mode}"
        label = mode.replace("_", "-")
        e2e = r.stat(name, "e2e")
        rows.append((f"drain {label}: enqueue, tasks/s", _cell(r.stat(name, "enqueue")), "", "—"))
        rows.append(
            (
                f"drain {label}: end to end, tasks/s",
                _cell(e2e),
                "",
                f"≥ 100,000/s: {_verdict(e2e.median >= 100_000)}",
            )
        )
    rows.append(
        (
            "drain at-least-once: end to end, collector at its defaults, tasks/s",
            _cell(r.stat("memory.default_gc", "e2e")),
            "",
            "—",
        )
    )
    for mode in ("at_least_once", "at_most_once"):
        rows.append(
            (
                f"drain {mode.replace('_', '-')}: process CPU per task (producer + worker), us",
                _cell(r.stat(f"memory.drain_{mode}", "cpu_us")),
                "",
                "—",
            )
        )
    rows.append(
        (
            "drain at-least-once: process CPU per task, collector at its defaults, us",
            _cell(r.stat("memory.default_gc", "cpu_us")),
            "",
            "—",
        )
    )
    rows.append(
        (
            "worker alone on a filled queue (at-least-once), tasks/s",
            _cell(r.stat("memory.filled", "rate")),
            "",
            "—",
        )
    )
    rows.append(
        (
            "worker alone on a filled queue: process CPU per task, us",
            _cell(r.stat("memory.filled", "cpu_us")),
            "",
            "—",
        )
    )
    rows.append(("round trip: tasks/s", _cell(r.stat("memory.roundtrip", "rate")), "", "—"))
    rows.append(
        (
            "round trip: p50 / p99 latency (burst), ms",
            f"{_cell(r.stat('memory.roundtrip', 'p50_ms'))} / "
            f"{_cell(r.stat('memory.roundtrip', 'p99_ms'))}",
            "",
            "—",
        )
    )
    rows.append(
        (
            f"latency at {r.settings.latency_rate:.0f} tasks/s: p50 / p99, ms",
            f"{_cell(r.stat('memory.latency', 'p50_ms'))} / "
            f"{_cell(r.stat('memory.latency', 'p99_ms'))}",
            "",
            "—",
        )
    )
    return rows


def _peer_rows(r: Results) -> list[tuple[str, ...]]:
    name = "redis.drain_at_least_once"
    ours = r.stat(name, "e2e")
    ours_cpu = r.stat(name, "cpu_us")
    rows: list[tuple[str, ...]] = [
        (
            "Chicory (at-least-once)",
            _cell(r.stat(name, "enqueue")),
            _cell(ours),
            _cell(ours_cpu),
            "1.00x / 1.00x",
        ),
    ]
    for peer, label in (
        ("taskiq", "taskiq + taskiq-redis (streams)"),
        ("dramatiq", "Dramatiq + Redis broker"),
    ):
        if r.has(peer):
            e2e = r.stat(peer, "e2e")
            cpu = r.stat(peer, "cpu_us")
            rows.append(
                (
                    label,
                    _cell(r.stat(peer, "enqueue")),
                    _cell(e2e),
                    _cell(cpu),
                    f"{ours.ratio(e2e):.1f}x / {1 / ours_cpu.ratio(cpu):.1f}x",
                )
            )
    return rows


def _cpu_rows(r: Results) -> list[tuple[str, ...]]:
    systems = [
        ("redis.drain_at_least_once", "Chicory, at-least-once"),
        ("redis.drain_at_most_once", "Chicory, at-most-once"),
        ("taskiq", "taskiq + taskiq-redis"),
        ("dramatiq", "Dramatiq"),
    ]
    rows: list[tuple[str, ...]] = []
    for name, label in systems:
        if not r.has(name):
            continue
        cells = [label]
        total = 0.0
        for field in ("producer_cpu_us", "cpu_us", "redis_cpu_us"):
            if field in r.runs[name][0].values:
                stat = r.stat(name, field)
                cells.append(_cell(stat))
                total += stat.median
            else:
                cells.append("n/a")
        cells.append(_num(total))
        cells.append(f"{_CORES * 1e6 / total:,.0f}" if total else "n/a")
        rows.append(tuple(cells))
    return rows


def _sweep_rows(r: Results) -> list[tuple[str, ...]]:
    s = r.settings
    names = {(s.concurrency, s.worker_prefetch): "redis.drain_at_least_once"}
    for name in r.runs:
        if name.startswith("sweep."):
            _, concurrency, prefetch = name.split(".")
            names[(int(concurrency), int(prefetch))] = name
    rows: list[tuple[str, ...]] = []
    for concurrency, prefetch in sorted(names):
        name = names[(concurrency, prefetch)]
        default = " (library default)" if prefetch == concurrency else ""
        rows.append(
            (
                f"{concurrency} / {prefetch}{default}",
                _cell(r.stat(name, "enqueue")),
                _cell(r.stat(name, "e2e")),
                _cell(r.stat(name, "cpu_us")),
            )
        )
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(r: Results) -> str:
    """The generated Markdown: machine, settings and one table per benchmark group."""
    s = r.settings
    machine = "\n".join(f"- {key}: {value}" for key, value in r.machine.items())
    floor_rows = [
        ("pipelined XADD, messages/s", _cell(r.stat("floor", "xadd"))),
        ("XREADGROUP + XACK, messages/s", _cell(r.stat("floor", "xreadgroup_xack"))),
    ]
    if r.has("latency_floor"):
        rate = r.settings.latency_rate
        for field in ("p50_ms", "p99_ms"):
            floor_rows.append(
                (
                    f"XADD → relay process → PUBLISH at {rate:.0f}/s, {field[:3]} latency, ms",
                    _cell(r.stat("latency_floor", field)),
                )
            )
    parts = [
        START,
        "",
        f"Generated by `benchmarks/run` in {r.elapsed:.0f} s. Each cell is the median of "
        f"{s.runs} run(s), (min-max) when more than one.",
        "",
        "### Machine",
        "",
        machine,
        "",
        f"Settings: drain {s.drain_tasks:,} tasks, round trip {s.roundtrip_tasks:,}, "
        f"open loop {s.latency_rate:.0f} tasks/s for {s.latency_seconds:.0f} s, worker "
        f"concurrency {s.concurrency}, prefetch {s.worker_prefetch}, batches of {s.batch:,}, "
        f"Redis db {s.db}.",
        "",
        "### Chicory on Redis (separate worker process)",
        "",
        _table(("measure", "result", "vs floor", "target"), _chicory_rows(r)),
        "",
        "### Chicory on memory:// (producer and worker in one process)",
        "",
        _table(("measure", "result", "", "target"), _memory_rows(r)),
        "",
        "### The floor (plain redis-py, same machine, same run)",
        "",
        _table(("operation", "result"), floor_rows),
        "",
        f"### Peers: drain of {s.drain_tasks:,} no-op tasks, separate worker process",
        "",
        _table(
            (
                "system",
                "enqueue, tasks/s",
                "end to end, tasks/s",
                "worker CPU per task, us",
                "Chicory's advantage: rate / CPU",
            ),
            _peer_rows(r),
        ),
        "",
    ]
    parts += [
        "### Worker settings: at-least-once drain on Redis",
        "",
        _table(
            (
                "worker concurrency / prefetch",
                "enqueue, tasks/s",
                "end to end, tasks/s",
                "worker CPU per task, us",
            ),
            _sweep_rows(r),
        ),
        "",
    ]
    parts += [
        f"### CPU per task during the drain, us (all on the same {_CORES}-core machine)",
        "",
        _table(
            (
                "system",
                "producer",
                "worker",
                "redis-server",
                "total",
                "tasks/s if every core were busy",
            ),
            _cpu_rows(r),
        ),
        "",
    ]
    if r.has("soak"):
        soak = r.runs["soak"][0].values
        growth = soak["growth"]
        parts += [
            "### Worker memory (Redis, separate worker process, at-least-once no-ops)",
            "",
            _table(
                ("measure", "result"),
                [
                    ("RSS after 10,000 tasks, MiB", _num(soak["rss_first_mib"])),
                    (f"RSS after {soak['tasks']:,.0f} tasks, MiB", _num(soak["rss_end_mib"])),
                    (
                        "growth",
                        f"{growth:+.1%} (target within 10%: {_verdict(abs(growth) <= 0.10)})",
                    ),
                    ("peak RSS, MiB", _num(soak["peak_mib"])),
                    ("throughput over the soak, tasks/s", _num(soak["rate"])),
                ],
            ),
            "",
        ]
    parts.append(END)
    return "\n".join(parts)


def write_report(path: Path, generated: str, template: Callable[[], str]) -> None:
    """Replace the generated block of ``path`` (or write ``template()`` with it first)."""
    text = path.read_text() if path.exists() else template()
    if START not in text or END not in text:
        text = template()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    path.write_text(pattern.sub(lambda _m: generated, text, count=1))
