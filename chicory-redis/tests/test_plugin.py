"""Entry-point discovery, lazy registration and the key layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from redis.crc import key_slot

import chicory_redis
from chicory.plugins import BackendKind, PluginHost
from chicory_redis.broker import RedisBroker
from chicory_redis.keys import KeySpace
from chicory_redis.results import RedisResultBackend


def test_entry_point_registers_broker_and_backend_for_every_scheme() -> None:
    host = PluginHost()
    for kind, cls in (
        (BackendKind.BROKER, RedisBroker),
        (BackendKind.RESULT_BACKEND, RedisResultBackend),
    ):
        for url in ("redis://localhost/0", "rediss://h/1", "unix:///tmp/redis.sock"):
            spec, _ = host.resolve(kind, url)
            assert spec.name == "redis"
            assert spec.install_hint == "pip install chicory-redis"
            built = spec.load_factory()(url)
            assert isinstance(built, cls)


def test_plugin_module_imports_no_driver() -> None:
    src = str(Path(chicory_redis.__file__).parents[1])
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import chicory_redis.plugin; "
        "assert 'redis' not in sys.modules, 'redis imported at registration'"
    )
    subprocess.run([sys.executable, "-c", code, src], check=True)


def test_all_keys_of_a_queue_share_one_cluster_slot() -> None:
    keys = KeySpace("app").queue("emails:high")
    slots = {key_slot(k.encode()) for k in (keys.stream, keys.delayed, keys.dead)}
    assert len(slots) == 1
    other = KeySpace("app").queue("reports")
    assert key_slot(other.stream.encode()) != key_slot(keys.stream.encode())


def test_key_names_are_prefixed() -> None:
    space = KeySpace("p")
    assert space.queue("q").stream == "p:{q:q}:stream"
    assert space.result("t1") == "p:result:t1"
    assert space.worker("w1") == "p:worker:w1"
    assert space.result_channel.startswith("p:")
    assert space.workers.startswith("p:")
