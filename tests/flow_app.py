"""The app that subprocess workers of the workflow fault tests run (``flow_app:app``).

The broker (and result backend) come from ``CHICORY_BROKER_URL``. Each step appends
``start <n>`` to the file named by ``CHICORY_TEST_RUNS``. With ``CHICORY_TEST_DIE_AFTER``
set to a step number, the worker kills itself (SIGKILL) when it is about to publish the
step after that one: the step's result is stored, the next step is not published and the
step's delivery is not settled, as when a worker dies between two steps.
"""

from __future__ import annotations

import os
import signal

from chicory import Chicory, DeliveryMode, Middleware, RetryPolicy
from chicory.middleware import OutgoingTask


def record(event: str) -> None:
    """Append one line to the runs file."""
    with open(os.environ.get("CHICORY_TEST_RUNS", os.devnull), "a") as runs:
        runs.write(event + "\n")


class DieBetweenSteps(Middleware):
    """SIGKILLs this process as it publishes the step after step ``CHICORY_TEST_DIE_AFTER``."""

    def before_publish(self, message: OutgoingTask) -> None:
        after = os.environ.get("CHICORY_TEST_DIE_AFTER")
        if after and message.task.startswith("f.step") and message.args[:1] == [int(after)]:
            record(f"die {after}")
            os.kill(os.getpid(), signal.SIGKILL)


app = Chicory(retry_policy=RetryPolicy(max_retries=0), middleware=[DieBetweenSteps()])


@app.task(name="f.step.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
async def step_alo(n: int) -> int:
    """Step ``n`` of a chain; returns ``n + 1``, the next step's number."""
    record(f"start {n}")
    return n + 1


@app.task(name="f.step.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
async def step_amo(n: int) -> int:
    """Step ``n`` of an at-most-once chain; returns ``n + 1``."""
    record(f"start {n}")
    return n + 1


@app.task(name="f.total")
async def total(values: list[int]) -> int:
    """A chord's callback: the sum of its members' results."""
    record(f"start total{len(values)}")
    return sum(values)
