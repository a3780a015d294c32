"""How a peer's worker process reports a PostgreSQL drain (``pg_drain.drain``) at exit.

Each no-op task calls :func:`done`, which counts it and remembers when it ended. When the
process exits (after its graceful shutdown on SIGTERM) it writes ``<count> <last end>`` to
the file named by ``$BENCH_PEER_DONE`` plus ``.<pid>``: the harness learns when the drain
ended without a per-task measurement write, as ``sqlite_app`` does for Chicory's workers.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

__all__ = ["DONE_ENV", "done"]

DONE_ENV = "BENCH_PEER_DONE"
"""The variable naming the file prefix the worker process reports to at exit."""

_ran = [0, 0.0]


def done() -> None:
    """Count one finished no-op task of this worker process."""
    _ran[0] += 1
    _ran[1] = time.time()


def _report() -> None:
    target = os.environ.get(DONE_ENV)
    if target:
        Path(f"{target}.{os.getpid()}").write_text(f"{_ran[0]} {_ran[1]!r}")


atexit.register(_report)
