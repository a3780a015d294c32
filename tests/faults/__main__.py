"""``python -m faults`` (``./scripts/faults``): run the fault matrix and print its table.

Every scenario in both delivery modes by default, with the full profile; each run prints
one line as it finishes, then the matrix as a Markdown table (the one in
``docs/reliability.md``). Exit code 1 if any run misses a target (see
:func:`faults.harness.verdict`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import anyio

from faults.harness import BOUNDED, FULL, MODES, SCENARIOS, RunResult, run_scenario, verdict


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m faults",
        description="Run the fault matrix and print its table (see docs/reliability.md).",
    )
    parser.add_argument(
        "-s", "--scenario", action="append", choices=SCENARIOS, help="(repeatable; default: all)"
    )
    parser.add_argument(
        "-m", "--mode", action="append", choices=sorted(MODES), help="(repeatable; default: both)"
    )
    parser.add_argument("--bounded", action="store_true", help="the test suite's smaller profile")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--keep", type=Path, help="keep run directories (logs) under this path")
    return parser


def _recovery(result: RunResult) -> str:
    if not result.recovery:
        return "-"
    return ", ".join("never" if r == float("inf") else f"{r:.1f}" for r in result.recovery)


def table(results: list[RunResult]) -> str:
    """The matrix as a Markdown table."""
    lines = [
        "| scenario | mode | published | unknown | lost | run twice | most runs | stuck "
        "| crashed | rate before (/s) | to full throughput (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.scenario} | {r.mode} | {r.published} | {r.unknown} | {r.lost} | "
            f"{r.run_twice} | {r.max_runs} | {r.stuck} | {r.crashed} | {r.baseline_rate:.0f} "
            f"| {_recovery(r)} |"
        )
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> int:
    profile = BOUNDED if args.bounded else FULL
    results: list[RunResult] = []
    failed = False
    root = args.keep or Path(tempfile.mkdtemp(prefix="chicory-faults-"))
    for scenario in args.scenario or SCENARIOS:
        for mode in args.mode or ("alo", "amo"):
            result = await run_scenario(scenario, mode, root / f"{scenario}-{mode}", profile)
            results.append(result)
            broken = verdict(result)
            failed = failed or bool(broken)
            status = "ok" if not broken else "MISSED: " + "; ".join(broken)
            print(
                f"{scenario:<15} {mode}  {result.seconds:5.1f} s  lost={result.lost} "
                f"twice={result.run_twice} max={result.max_runs} stuck={result.stuck} "
                f"unknown={result.unknown} recovery={_recovery(result)}  {status}",
                file=sys.stderr,
                flush=True,
            )
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "python": platform.python_version(),
                    "machine": platform.platform(),
                    "profile": "bounded" if args.bounded else "full",
                    "runs": [r.as_dict() for r in results],
                },
                indent=2,
            )
        )
    return 1 if failed else 0


def main() -> int:
    """Run the matrix; return the exit code."""
    return anyio.run(_main, _parser().parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
