"""An app that imports in the supervisor but crashes in every worker process it starts.

For the test that a supervisor gives up on children that keep crashing at start.
"""

from __future__ import annotations

import multiprocessing

from chicory import Chicory

if multiprocessing.parent_process() is not None:
    raise RuntimeError("this app refuses to start in a worker process (on purpose)")

app = Chicory()
