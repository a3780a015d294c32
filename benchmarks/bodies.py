"""What a batch of encoded bodies costs: orjson's own bytes, or a copy of their exact size.

Usage (from the repository root; needs nothing else)::

    .venv/bin/python benchmarks/bodies.py [--batch N] [--batches N]

Encodes ``--batches`` batches of ``--batch`` task envelopes, each batch kept alive until it
is complete and then dropped (as a ``delay_many`` batch, a memory:// backlog or a worker's
batch of result records is), once with ``orjson.dumps`` and once with
:func:`chicory.envelope.to_json` (the same bytes, copied out of orjson's buffer). Prints the
time per body and the minor page faults per batch of each, alternating three times. On
glibc, orjson's buffers make the heap grow for every batch and shrink when it is freed, and
every body of the next batch pays a page fault; the copies come from Python's allocator.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from chicory.envelope import to_json

PAYLOAD = {
    "v": 1,
    "id": "2cbb753203364c90916c20727c331a1b",
    "task": "bench.noop_alo",
    "args": ["run-0000000000", 10000],
    "kwargs": {},
    "attempt": 1,
    "queue": "default",
    "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    "eta": None,
}


def measure(encode: Callable[[object], bytes], batch: int, batches: int) -> tuple[float, float]:
    """Encode ``batches`` batches of ``batch`` bodies; (us per body, page faults per batch)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(batches):
        bodies = [encode(PAYLOAD) for _ in range(batch)]
        del bodies
    elapsed = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return elapsed / (batch * batches) * 1e6, faults / batches


def main() -> int:
    """Print both encoders' cost, three times in alternation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    print(f"batches of {args.batch:,} bodies of {len(to_json(PAYLOAD))} bytes")
    for _ in range(3):
        for name, encode in (("orjson.dumps", orjson.dumps), ("to_json", to_json)):
            per_body, faults = measure(encode, args.batch, args.batches)
            print(f"  {name:13s} {per_body:6.3f} us per body, {faults:7.1f} page faults per batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
