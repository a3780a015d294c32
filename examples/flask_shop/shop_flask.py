"""Flask with Chicory: enqueue from a view with the blocking API, report status from another.

Run it (from this directory)::

    pip install flask chicory-core chicory-memory chicory-redis
    export CHICORY_BROKER_URL=redis://localhost:6379/0
    chicory worker shop_flask:tasks        # the worker, in its own process
    flask --app shop_flask run             # the web app

    curl -X POST localhost:5000/thumbnails -d image=cat.png -d width=128
    curl 'localhost:5000/tasks/<task id>?wait=5'
    curl -X POST localhost:5000/thumbnails/batch -d image=cat.png -d width=64 -d width=128
    curl 'localhost:5000/batches/<id,id>?wait=5'

Flask views are synchronous, so they use the blocking API (``task.blocking``, and
``flow.blocking`` for a group of tasks): the first call starts one portal thread per
process, whose event loop holds Chicory's connections for every request thread; a forked
server worker (gunicorn, uwsgi) gets its own.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Flask, request

from chicory import Chicory, TaskFailedError
from chicory.workflow import group
from chicory.workflow.blocking import BlockingGroupResult

tasks = Chicory()  # CHICORY_BROKER_URL, else memory://


@tasks.task(name="shop.make_thumbnail")
def make_thumbnail(image: str, width: int) -> str:
    """Pretend to resize an image (a sync task: it runs in the worker's thread pool)."""
    return f"{image.rsplit('.', 1)[0]}-{width}px.png"


app = Flask(__name__)


@app.post("/thumbnails")
def create_thumbnail() -> tuple[dict[str, Any], int]:
    image, width = request.form.get("image", ""), request.form.get("width", "")
    if not image or not width.isdigit():
        return {"error": "give an image name and a width in pixels"}, 400
    result = make_thumbnail.blocking.delay(image, int(width))
    return {"task_id": result.id, "status_url": f"/tasks/{result.id}"}, 202


@app.get("/tasks/<task_id>")
def task_status(task_id: str) -> dict[str, Any]:
    """The task's state and, once finished, its result or error; ``?wait=`` seconds at most."""
    result = make_thumbnail.blocking.result(task_id)
    wait = min(float(request.args.get("wait", 0)), 30.0)
    if wait > 0:
        with contextlib.suppress(TimeoutError, TaskFailedError):  # both reported below
            result.get(timeout=wait)
    record = result.info()
    if record is None:
        return {"task_id": task_id, "state": "PENDING"}
    return {
        "task_id": task_id,
        "state": record.state.value,
        "result": record.result,
        "error": record.error.message if record.error else None,
    }


@app.post("/thumbnails/batch")
def create_thumbnails() -> tuple[dict[str, Any], int]:
    """One thumbnail per ``width``, made in parallel: a group of tasks."""
    image, widths = request.form.get("image", ""), request.form.getlist("width")
    if not image or not widths or not all(width.isdigit() for width in widths):
        return {"error": "give an image name and one or more widths in pixels"}, 400
    batch = group(make_thumbnail.s(image, int(width)) for width in widths).blocking.apply_async()
    return {"task_ids": batch.ids, "status_url": f"/batches/{','.join(batch.ids)}"}, 202


@app.get("/batches/<task_ids>")
def batch_status(task_ids: str) -> dict[str, Any]:
    """How many of the batch's thumbnails are done and, once all are, their names;
    ``?wait=`` seconds at most for each."""
    batch = BlockingGroupResult.of(tasks, task_ids.split(","))
    wait = min(float(request.args.get("wait", 0)), 30.0)
    if wait > 0:
        with contextlib.suppress(TimeoutError, TaskFailedError):  # both reported below
            batch.get(timeout=wait)
    done, failed = batch.completed_count(), batch.failed()
    status: dict[str, Any] = {"done": done, "of": len(batch), "failed": failed}
    if done == len(batch) and not failed:
        status["results"] = batch.get(timeout=0)
    return status
