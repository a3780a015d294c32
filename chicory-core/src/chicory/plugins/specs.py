"""Specs: what a plugin registers so Chicory can find and lazily build a backend or a
middleware."""

from __future__ import annotations

import enum
import importlib
import re
from collections.abc import Iterable
from typing import Any

import attrs

from chicory.errors import ConfigurationError

__all__ = ["BackendKind", "BackendSpec", "MiddlewareSpec"]

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class BackendKind(enum.StrEnum):
    """What a spec builds."""

    BROKER = "broker"
    RESULT_BACKEND = "result backend"


def _to_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _check_factory(_instance: object, _attribute: object, value: str) -> None:
    if not _FACTORY.match(value):
        raise ValueError(f"factory must look like 'package.module:attribute', got {value!r}")


def _check_optional_factory(instance: object, attribute: object, value: str) -> None:
    if value:
        _check_factory(instance, attribute, value)


@attrs.frozen(kw_only=True)
class BackendSpec:
    """A broker or result backend a plugin offers. Registering one imports nothing heavy.

    Attributes:
        name: Unique name users can select it by (``Chicory(broker="memory")``).
        schemes: URL schemes that select it (``("redis", "rediss")``).
        factory: ``"module:attr"`` of a callable ``(url: str, **options) -> instance``,
            imported only when the backend is selected.
        install_hint: What to run to get it, shown in error messages.
        description: One line for ``chicory plugins``.
        conformance_transactions: For a broker declaring ``transactional_enqueue``,
            ``"module:attr"`` of the
            :class:`~chicory.testing.transaction_hooks.TransactionFactory` that
            ``chicory conformance`` gives the suite to open transactions on the broker's
            database; empty when there is none.
    """

    name: str
    schemes: tuple[str, ...] = attrs.field(converter=_to_tuple)
    factory: str = attrs.field(validator=_check_factory)
    install_hint: str = ""
    description: str = ""
    conformance_transactions: str = attrs.field(default="", validator=_check_optional_factory)

    def load_factory(self) -> Any:
        """Import and return the factory callable.

        Raises:
            ConfigurationError: the module or attribute cannot be imported.
        """
        return _load("backend", self.name, self.factory, self.install_hint)

    def load_conformance_transactions(self) -> Any:
        """Import and return ``conformance_transactions``, or ``None`` when it is not set.

        Raises:
            ConfigurationError: the module or attribute cannot be imported.
        """
        if not self.conformance_transactions:
            return None
        return _load("backend", self.name, self.conformance_transactions, self.install_hint)


@attrs.frozen(kw_only=True)
class MiddlewareSpec:
    """A middleware a plugin offers by name. Registering one imports nothing heavy.

    Attributes:
        name: Unique name users enable it by (``Chicory(middleware=["prometheus"])``,
            ``chicory worker --middleware prometheus``).
        factory: ``"module:attr"`` of a callable taking no arguments that returns the
            middleware (configured from the environment, say), imported only when enabled.
        install_hint: What to run to get it, shown in error messages.
        description: One line for ``chicory plugins``.
    """

    name: str
    factory: str = attrs.field(validator=_check_factory)
    install_hint: str = ""
    description: str = ""

    def load_factory(self) -> Any:
        """Import and return the factory callable.

        Raises:
            ConfigurationError: the module or attribute cannot be imported.
        """
        return _load("middleware", self.name, self.factory, self.install_hint)


def _load(kind: str, name: str, factory: str, install_hint: str) -> Any:
    module_name, _, attr_path = factory.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        hint = f" Try: {install_hint}" if install_hint else ""
        raise ConfigurationError(
            f"{kind} {name!r} could not load its factory {factory!r}: {exc}.{hint}"
        ) from exc
    return target
