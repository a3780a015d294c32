"""examples/flask_shop under Flask's test client, on memory:// and on Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chicory import blocking
from chicory.testkit import BlockingLocalWorker
from examples_support import EXAMPLES, load_example, redis_prefix, redis_url
from processes import worker_process


def test_on_memory_with_the_testkit_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    shop = load_example(monkeypatch, "flask_shop", "shop_flask", None)
    client = shop.app.test_client()
    with BlockingLocalWorker(shop.tasks) as local:
        response = client.post("/thumbnails", data={"image": "cat.png", "width": "128"})
        assert response.status_code == 202, response.text
        status_url = response.json["status_url"]
        local.run_until_idle()
        status = client.get(status_url).json
        assert status["state"] == "SUCCESS"
        assert status["result"] == "cat-128px.png"
        refused = client.post("/thumbnails", data={"image": "cat.png", "width": "big"})
        assert refused.status_code == 400
        batch = client.post("/thumbnails/batch", data={"image": "cat.png", "width": [64, 128]})
        assert batch.status_code == 202, batch.text
        local.run_until_idle()
        progress = client.get(batch.json["status_url"]).json
        assert progress == {
            "done": 2,
            "of": 2,
            "failed": False,
            "results": ["cat-64px.png", "cat-128px.png"],
        }
        refused = client.post("/thumbnails/batch", data={"image": "cat.png"})
        assert refused.status_code == 400


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix("flask") as name:
        yield name


def test_on_redis_with_a_worker_process(
    monkeypatch: pytest.MonkeyPatch, prefix: str, tmp_path: Path
) -> None:
    url = redis_url(prefix)
    shop = load_example(monkeypatch, "flask_shop", "shop_flask", url)
    client = shop.app.test_client()
    directory = EXAMPLES / "flask_shop"
    try:
        with worker_process(url, tmp_path / "runs", app="shop_flask:tasks", directory=directory):
            for width in (64, 128, 256):
                response = client.post("/thumbnails", data={"image": "dog.png", "width": width})
                status = client.get(response.json["status_url"], query_string={"wait": 10}).json
                assert status["state"] == "SUCCESS", status
                assert status["result"] == f"dog-{width}px.png"
            batch = client.post(
                "/thumbnails/batch", data={"image": "dog.png", "width": [64, 128, 256]}
            )
            progress = client.get(batch.json["status_url"], query_string={"wait": 10}).json
            assert progress["of"] == 3
            assert progress["done"] == 3, progress
            assert progress["results"] == [f"dog-{w}px.png" for w in (64, 128, 256)]
    finally:
        blocking.close(shop.tasks)
