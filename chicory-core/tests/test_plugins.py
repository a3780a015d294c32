"""Plugin discovery and selection: by name, by exact URL scheme, with helpful errors."""

from __future__ import annotations

import pytest

from chicory import Chicory
from chicory.cli import main
from chicory.errors import DuplicateBackendError, UnknownBackendError
from chicory.plugins import BackendKind, BackendSpec, PluginHost, hookimpl


class FakePlugin:
    def __init__(self, name: str, scheme: str) -> None:
        self.name, self.scheme = name, scheme

    @hookimpl
    def chicory_register_brokers(self) -> list[BackendSpec]:
        return [
            BackendSpec(
                name=self.name,
                schemes=(self.scheme,),
                factory="chicory_memory.broker:MemoryBroker.from_url",
            )
        ]


def test_memory_is_found_by_scheme_and_by_name() -> None:
    host = PluginHost()
    spec, url = host.resolve(BackendKind.BROKER, "memory://")
    assert spec.name == "memory"
    assert url == "memory://"
    spec, url = host.resolve(BackendKind.BROKER, "memory")
    assert spec.name == "memory"
    assert url == "memory://"
    installed = {i.spec.name: i for i in host.installed(BackendKind.BROKER)}
    assert installed["memory"].distribution is not None
    assert installed["memory"].distribution.startswith("chicory-memory")


def test_unknown_scheme_lists_installed_and_how_to_install() -> None:
    with pytest.raises(UnknownBackendError) as info:
        Chicory(broker="kafka://localhost:9092")
    text = str(info.value)
    assert "'kafka'" in text
    assert "memory (memory://)" in text
    assert "entry point" in text


def test_unknown_first_party_scheme_names_the_distribution() -> None:
    host = PluginHost(load_entry_points=False)
    with pytest.raises(UnknownBackendError, match="pip install chicory-redis"):
        host.resolve(BackendKind.BROKER, "redis://localhost")


def test_scheme_match_is_exact() -> None:
    with pytest.raises(UnknownBackendError):
        PluginHost().resolve(BackendKind.BROKER, "memoryx://")


def test_duplicate_schemes_name_both_plugins() -> None:
    host = PluginHost(
        load_entry_points=False, plugins=[FakePlugin("one", "dup"), FakePlugin("two", "dup")]
    )
    with pytest.raises(DuplicateBackendError, match=r"'dup'.*by plugin.*and by plugin"):
        host.installed(BackendKind.BROKER)


def test_factory_strings_are_validated() -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        BackendSpec(name="x", schemes=("x",), factory="not a factory")


def test_observer_failures_are_isolated() -> None:
    calls: list[str] = []

    class Bad:
        @hookimpl
        def chicory_task_started(self, event: object) -> None:
            raise RuntimeError("observer bug")

    class Good:
        @hookimpl
        def chicory_task_started(self, event: object) -> None:
            calls.append("good")

    host = PluginHost(load_entry_points=False, plugins=[Bad(), Good()])
    host.notify("chicory_task_started", object())
    assert calls == ["good"]


def test_plugins_command_lists_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "memory" in out
    assert "memory://" in out
    assert "chicory-memory" in out
