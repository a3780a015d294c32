"""Runs one benchmark repetition in a fresh Python process (the harness runs it; prints JSON).

The harness process imports every peer and keeps every measurement; its garbage collector
and caches are not those of an application, and they would weigh on whatever producer
runs inside it. So every repetition, Chicory's, the peers' and the floors', gets a process
of its own, like the workers do. Usage::

    python child.py MODULE FUNCTION '<Settings as JSON>' '<more arguments as JSON list>'

``FUNCTION`` is ``async def f(settings, *args)`` returning a :class:`common.Measurement` or
a ``dict`` of them; arguments its signature annotates as ``Path`` are passed as paths.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from common import Measurement, Settings


def main() -> None:
    """Run the named benchmark function once; print its result as JSON on the last line."""
    module, function, settings_json, args_json = sys.argv[1:5]
    fn = getattr(importlib.import_module(module), function)
    params = list(inspect.signature(fn).parameters.values())[1:]
    args = [
        Path(value) if param.annotation in ("Path", Path) else value
        for param, value in zip(params, json.loads(args_json), strict=False)
    ]
    result: Any = asyncio.run(fn(Settings(**json.loads(settings_json)), *args))
    if isinstance(result, Measurement):
        print(json.dumps({"values": result.values}))
    else:
        print(json.dumps({"named": {name: m.values for name, m in result.items()}}))


if __name__ == "__main__":
    main()
