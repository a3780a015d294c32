"""The bounded fault matrix: what must never happen, whatever a fault does.

Each case runs one scenario of :mod:`faults.harness` with its smaller profile: real worker
processes on a private Redis with AOF, producers sending throughout. A case fails on any lost
at-least-once task, any at-most-once task run twice, anything stuck in the queue when the
drain gives up, a worker that crashed or exited non-zero, or at-least-once duplicates beyond
what the faulted workers held. In the Redis fault cases the lease is a minute and the drain
waits 40 s, so work left waiting for a lease after the fault shows as stuck.

The figures of every scenario, recovery times included, come from the full run
(``./scripts/faults``, see ``docs/reliability.md``), not from here: the suite asserts no
timings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.harness import BOUNDED, run_scenario, verdict

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(150)]


@pytest.mark.parametrize(
    ("scenario", "mode"),
    [
        ("redis-restart", "alo"),
        ("redis-restart", "amo"),
        ("client-kill", "alo"),
        ("redis-hang", "amo"),
        ("worker-sigkill", "alo"),
        ("worker-sigkill", "amo"),
    ],
)
async def test_a_fault_loses_nothing_it_must_keep(scenario: str, mode: str, tmp_path: Path) -> None:
    result = await run_scenario(scenario, mode, tmp_path / f"{scenario}-{mode}", BOUNDED)
    assert result.published > BOUNDED.backlog  # the producer sent during the run
    assert verdict(result, timing=False) == [], result.as_dict()
