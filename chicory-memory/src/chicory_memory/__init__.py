"""chicory-memory: the in-process reference broker and result backend (``memory://``).

* :mod:`chicory_memory.broker` -- :class:`MemoryBroker`, the async facade, with its faces
  :mod:`~chicory_memory.publishing`, :mod:`~chicory_memory.dead_letters`,
  :mod:`~chicory_memory.admin` and :mod:`~chicory_memory.flow` over
  :mod:`~chicory_memory.base`.
* :mod:`chicory_memory.store` -- where its messages, leases and dead letters are stored, and
  every rule that changes them; how deliveries end is its mixin :mod:`~chicory_memory.settling`.
* :mod:`chicory_memory.consumer`, :mod:`chicory_memory.delivery` -- consumer and delivery
  handles on that store.
* :mod:`chicory_memory.results` -- :class:`MemoryResultBackend`, with its revocation records
  in :mod:`~chicory_memory.revocations`.
* :mod:`chicory_memory.plugin` -- registers both with Chicory.

The classes are imported lazily so that plugin discovery (which imports this package)
stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chicory_memory.broker import MemoryBroker
    from chicory_memory.results import MemoryResultBackend

__all__ = ["MemoryBroker", "MemoryResultBackend"]


def __getattr__(name: str) -> Any:
    if name == "MemoryBroker":
        from chicory_memory.broker import MemoryBroker

        return MemoryBroker
    if name == "MemoryResultBackend":
        from chicory_memory.results import MemoryResultBackend

        return MemoryResultBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
