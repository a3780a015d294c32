"""examples/django_shop under Django's test client, on memory:// and on Redis.

Django is set up once per process, so this module configures it for both variants: the
settings read ``CHICORY_BROKER_URL`` (a Redis URL with this module's key prefix) and
``SHOP_DB`` (a fresh SQLite file) before the first import. The memory:// variant replaces
the broker with the testkit's in-process one.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chicory import blocking
from chicory.testkit import BlockingLocalWorker
from examples_support import EXAMPLES, redis_url
from processes import delete_keys, worker_process

DIRECTORY = EXAMPLES / "django_shop"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prefix = f"t-django-{uuid.uuid4().hex[:8]}"
    env = {
        "CHICORY_BROKER_URL": redis_url(prefix),
        "SHOP_DB": str(tmp_path_factory.mktemp("shop") / "db.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "shop_site.settings",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    sys.path.insert(0, str(DIRECTORY))
    try:
        import django
        from django.core.management import call_command
        from django.test import Client

        django.setup()
        call_command("migrate", verbosity=0)
        from orders import models, tasks

        yield {"client": Client(), "models": models, "tasks": tasks, "env": env}
        blocking.close(tasks.app)
    finally:
        sys.path.remove(str(DIRECTORY))
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        delete_keys(prefix)


def restock(models: ModuleType, available: int) -> None:
    models.Stock.objects.all().delete()
    models.Stock.objects.create(available=available)


def test_on_memory_the_task_runs_after_commit_and_never_after_rollback(
    shop: dict[str, Any],
) -> None:
    client, models, tasks = shop["client"], shop["models"], shop["tasks"]
    restock(models, 5)
    with BlockingLocalWorker(tasks.app) as local:
        created = client.post("/orders", {"email": "ann@example.com", "quantity": 2})
        assert created.status_code == 201, created.content
        order_id = created.json()["order_id"]
        local.run_until_idle()
        assert client.get(f"/orders/{order_id}").json()["status"] == "fulfilled"

        # Out of stock after the order row was inserted: the transaction rolls back, and
        # the task that on_commit would have enqueued is never sent.
        refused = client.post("/orders", {"email": "bob@example.com", "quantity": 9})
        assert refused.status_code == 409
        local.run_until_idle()
        assert not models.Order.objects.filter(email="bob@example.com").exists()
        counts = blocking.call(tasks.app, tasks.app.broker.counts, "default")
        assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 0)
        assert local.worker.processed == 1


def test_on_redis_with_a_worker_process(shop: dict[str, Any], tmp_path: Path) -> None:
    client, models, env = shop["client"], shop["models"], shop["env"]
    restock(models, 10)
    with worker_process(
        env["CHICORY_BROKER_URL"],
        tmp_path / "runs",
        app="orders.tasks:app",
        directory=DIRECTORY,
        env=env,
    ):
        ids = []
        for email in ("carl@example.com", "dana@example.com"):
            created = client.post("/orders", {"email": email, "quantity": 3})
            assert created.status_code == 201, created.content
            ids.append(created.json()["order_id"])
        deadline = time.monotonic() + 20
        while models.Order.objects.filter(pk__in=ids, status="fulfilled").count() < len(ids):
            assert time.monotonic() < deadline, "the worker process did not fulfil the orders"
            time.sleep(0.05)
