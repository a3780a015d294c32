"""examples/fastapi_shop under FastAPI's TestClient, on memory:// and on Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fastapi.testclient import TestClient

from examples_support import EXAMPLES, load_example, redis_prefix, redis_url
from processes import worker_process

ORDER = {"order_id": "o-1", "email": "ann@example.com"}
RECEIPT = "receipt for o-1 sent to ann@example.com"


def place_and_follow(client: TestClient, path: str) -> dict[str, object]:
    response = client.post(path, json=ORDER)
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    status: dict[str, object] = client.get(status_url, params={"wait": 10}).json()
    return status


def check(shop: ModuleType) -> None:
    # Two clients one after the other: two event loops, the app moves from one to the next.
    for _ in range(2):
        with TestClient(shop.api) as client:
            for path in ("/orders", "/orders/from-a-thread"):
                status = place_and_follow(client, path)
                assert status["state"] == "SUCCESS", status
                assert status["result"] == RECEIPT
            unknown = client.get("/tasks/0123456789abcdef").json()
            assert unknown == {"task_id": "0123456789abcdef", "state": "PENDING"}


def test_on_memory_with_the_in_process_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    check(load_example(monkeypatch, "fastapi_shop", "shop_api", None))


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix("fastapi") as name:
        yield name


def test_on_redis_with_a_worker_process(
    monkeypatch: pytest.MonkeyPatch, prefix: str, tmp_path: Path
) -> None:
    url = redis_url(prefix)
    shop = load_example(monkeypatch, "fastapi_shop", "shop_api", url)
    directory = EXAMPLES / "fastapi_shop"
    with worker_process(url, tmp_path / "runs", app="shop_api:tasks", directory=directory):
        check(shop)
