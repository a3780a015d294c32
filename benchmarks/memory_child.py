"""One memory:// repetition in a fresh process (run by the harness; prints JSON).

The harness process has imported every peer and holds every earlier measurement, so its
garbage collector and caches are not those of an application; like the Redis worker, the
in-process benchmark gets a process of its own. Usage::

    python memory_child.py '<Settings as JSON>'
"""

from __future__ import annotations

import asyncio
import json
import sys

import chicory_bench
from common import Settings


def main() -> None:
    """Run :func:`chicory_bench.memory_rep` with the given settings; print its values."""
    settings = Settings(**json.loads(sys.argv[1]))
    measured = asyncio.run(chicory_bench.memory_rep(settings))
    print(json.dumps({name: m.values for name, m in measured.items()}))


if __name__ == "__main__":
    main()
