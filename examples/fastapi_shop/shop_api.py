"""FastAPI with Chicory: enqueue from endpoints, report status, one app lifespan for both.

Run it (from this directory)::

    pip install fastapi uvicorn chicory-core chicory-memory chicory-redis
    export CHICORY_BROKER_URL=redis://localhost:6379/0
    chicory worker shop_api:tasks          # the worker, in its own process
    uvicorn shop_api:api                   # the API

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"order_id": "o-1", "email": "ann@example.com"}'
    curl 'localhost:8000/tasks/<task id>?wait=5'

With ``CHICORY_BROKER_URL`` unset the app runs on ``memory://``, which is process-local:
then the API runs an in-process worker itself (for trying it out; not for production).

* The lifespan connects Chicory on the server's event loop and closes it at shutdown.
* ``async def`` endpoints ``await`` the async API. Plain ``def`` endpoints, which FastAPI
  runs in a thread pool, use the blocking API (``task.blocking``): those calls are handed to
  the server's loop and share its connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from pydantic import BaseModel

from chicory import AsyncResult, Chicory, RetryPolicy, TaskFailedError, Worker

tasks = Chicory()  # CHICORY_BROKER_URL, else memory://


@tasks.task(name="shop.send_receipt", retry_policy=RetryPolicy(max_retries=3, delay=1))
async def send_receipt(order_id: str, email: str) -> str:
    """Pretend to e-mail a receipt; return what was sent."""
    await anyio.sleep(0.01)
    return f"receipt for {order_id} sent to {email}"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with tasks:  # connected on the server's loop, closed at shutdown
        if tasks.broker.capabilities.shared:
            yield  # workers run elsewhere: `chicory worker shop_api:tasks`
            return
        worker = Worker(tasks, heartbeat_interval=0)  # memory://: nobody else could run them
        async with anyio.create_task_group() as group:
            group.start_soon(worker.serve)
            yield
            worker.stop()


api = FastAPI(lifespan=lifespan)


class Order(BaseModel):
    order_id: str
    email: str


@api.post("/orders", status_code=202)
async def create_order(order: Order) -> dict[str, str]:
    result = await send_receipt.delay(order.order_id, order.email)
    return {"task_id": result.id, "status_url": f"/tasks/{result.id}"}


@api.post("/orders/from-a-thread", status_code=202)
def create_order_sync(order: Order) -> dict[str, str]:
    """A sync endpoint (run in FastAPI's thread pool): the blocking API."""
    result = send_receipt.blocking.delay(order.order_id, order.email)
    return {"task_id": result.id, "status_url": f"/tasks/{result.id}"}


@api.get("/tasks/{task_id}")
async def task_status(task_id: str, wait: float = 0.0) -> dict[str, Any]:
    """The task's state and, once finished, its result or error; ``wait`` seconds at most."""
    result: AsyncResult[Any] = AsyncResult(tasks, task_id)
    if wait > 0:
        with contextlib.suppress(TimeoutError, TaskFailedError):  # both reported below
            await result.get(timeout=min(wait, 30.0))
    record = await result.info()
    if record is None:
        return {"task_id": task_id, "state": "PENDING"}
    return {
        "task_id": task_id,
        "state": record.state.value,
        "result": record.result,
        "error": record.error.message if record.error else None,
    }
