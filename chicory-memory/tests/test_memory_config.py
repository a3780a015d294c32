"""Construction, URLs, capabilities and plugin discovery of memory://."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chicory.backend import ResultBackend
from chicory.broker import Broker, Capabilities, Consumer, Delivery
from chicory.clock import ManualClock
from chicory.errors import ConfigurationError
from chicory.inspection import InspectableBroker
from chicory.plugins import BackendKind, PluginHost
from chicory_memory.broker import MemoryBroker
from chicory_memory.results import MemoryResultBackend


def test_capabilities_declare_everything_but_sharing() -> None:
    assert MemoryBroker().capabilities == Capabilities(
        delayed_delivery=True,
        lease_renewal=True,
        dead_letter=True,
        fifo=True,
        priorities=True,
        atomic_retry=True,
        shared=False,
        max_body_bytes=None,
        lease_seconds=30.0,
        dead_letter_max_count=10_000,
        dead_letter_max_age=30 * 24 * 3600.0,
        lease_model="timed",
        delete_queue=True,
        inspection=True,
        delayed_listing=True,
        flow_control=True,
        unique_enqueue=True,
    )


def test_dead_letter_limits_come_from_the_url_and_none_lifts_them() -> None:
    limited = MemoryBroker.from_url("memory://?dead_letter_max_count=5&dead_letter_max_age=60")
    assert limited.capabilities.dead_letter_max_count == 5
    assert limited.capabilities.dead_letter_max_age == 60.0
    unlimited = MemoryBroker.from_url(
        "memory://?dead_letter_max_count=none&dead_letter_max_age=none"
    )
    assert unlimited.capabilities.dead_letter_max_count is None
    assert unlimited.capabilities.dead_letter_max_age is None
    with pytest.raises(ConfigurationError, match="dead_letter_max_count"):
        MemoryBroker(dead_letter_max_count=0)


def test_session_leases_declare_no_lease_and_no_renewal() -> None:
    capabilities = MemoryBroker.from_url("memory://?lease_model=session").capabilities
    assert (capabilities.lease_model, capabilities.lease_renewal) == ("session", False)
    assert capabilities.lease_seconds is None


def test_an_unknown_lease_model_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="lease_model must be 'timed' or 'session'"):
        MemoryBroker.from_url("memory://?lease_model=forever")


async def test_broker_and_consumer_satisfy_the_protocols() -> None:
    # The annotations make mypy check the signatures; isinstance checks the members.
    broker: Broker = MemoryBroker()
    backend: ResultBackend = MemoryResultBackend()
    inspectable: InspectableBroker = MemoryBroker()
    assert isinstance(inspectable, InspectableBroker)
    async with broker:
        await broker.publish("q", b"x")
        assert isinstance(broker, Broker)
        consumer: Consumer = broker.consume(["q"], prefetch=1)
        async with consumer:
            assert isinstance(consumer, Consumer)
            deliveries: Sequence[Delivery] = await consumer.fetch(1, timeout=0)
            assert all(isinstance(d, Delivery) for d in deliveries)
            assert len(deliveries) == 1
    assert isinstance(backend, ResultBackend)


def test_from_url_reads_query_options() -> None:
    broker = MemoryBroker.from_url("memory://?lease_seconds=2.5&max_deliveries=4&max_body_bytes=9")
    assert broker._store.lease_seconds == 2.5
    assert broker._store.max_deliveries == 4
    assert broker.capabilities.max_body_bytes == 9


def test_from_url_options_override_the_url() -> None:
    clock = ManualClock()
    broker = MemoryBroker.from_url("memory://?lease_seconds=2", lease_seconds=7, clock=clock)
    assert broker._store.lease_seconds == 7
    assert broker.clock is clock


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost", "memory://"),
        ("memory://?lease=3", "unknown option 'lease'"),
        ("memory://?lease_seconds=soon", "not a valid number"),
        ("memory://?lease_seconds=0", "lease_seconds must be positive"),
        ("memory://?max_deliveries=0", "max_deliveries must be at least 1"),
        ("memory://?max_body_bytes=0", "max_body_bytes must be at least 1"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MemoryBroker.from_url(url)


def test_unknown_factory_options_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="prefetch"):
        MemoryBroker.from_url("memory://", prefetch=3)
    with pytest.raises(ConfigurationError, match="lease_seconds"):
        MemoryResultBackend.from_url("memory://", lease_seconds=3)


def test_result_backend_accepts_the_brokers_url() -> None:
    clock = ManualClock()
    backend = MemoryResultBackend.from_url("memory://?lease_seconds=3", clock=clock)
    assert isinstance(backend, MemoryResultBackend)
    with pytest.raises(ConfigurationError, match="unknown option"):
        MemoryResultBackend.from_url("memory://?ttl=3")
    with pytest.raises(ConfigurationError):
        MemoryResultBackend.from_url("redis://")


@pytest.mark.parametrize("target", ["memory://", "memory", "memory://?lease_seconds=5"])
def test_entry_point_resolves_memory_for_both_kinds(target: str) -> None:
    host = PluginHost()
    broker_spec, broker_url = host.resolve(BackendKind.BROKER, target)
    backend_spec, backend_url = host.resolve(BackendKind.RESULT_BACKEND, target)
    assert isinstance(broker_spec.load_factory()(broker_url), MemoryBroker)
    assert isinstance(backend_spec.load_factory()(backend_url), MemoryResultBackend)
    installed = host.installed(BackendKind.BROKER)
    [memory] = [item for item in installed if item.spec.name == "memory"]
    assert memory.distribution is not None
    assert memory.distribution.startswith("chicory-memory")


def test_package_exports_both_classes_lazily() -> None:
    import chicory_memory

    assert chicory_memory.MemoryBroker is MemoryBroker
    assert chicory_memory.MemoryResultBackend is MemoryResultBackend
    with pytest.raises(AttributeError):
        _ = chicory_memory.Nothing
