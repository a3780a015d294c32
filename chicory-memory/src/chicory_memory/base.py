"""What every face of the memory broker shares: its store, its clock, and being connected.

:class:`BrokerBase` holds the state; the faces (:mod:`chicory_memory.publishing`,
:mod:`chicory_memory.dead_letters`, :mod:`chicory_memory.admin`, :mod:`chicory_memory.flow`)
add the protocol methods, and :class:`~chicory_memory.broker.MemoryBroker` puts them
together with its lifecycle and consumers.
"""

from __future__ import annotations

from chicory.clock import Clock
from chicory.errors import BrokerError
from chicory_memory.store import MemoryStore

__all__ = ["BrokerBase"]


class BrokerBase:
    """The state every face of :class:`~chicory_memory.broker.MemoryBroker` uses.

    Args:
        store: Where the broker's messages, leases and dead letters are stored.
        clock: The clock leases and delays are judged by.
    """

    def __init__(self, store: MemoryStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._connected = False

    @property
    def clock(self) -> Clock:
        """The clock leases and delays are judged by."""
        return self._clock

    def _check_connected(self) -> None:
        """Raise :class:`~chicory.errors.BrokerError` unless the broker is connected."""
        if not self._connected:
            raise BrokerError(
                "the memory broker is not connected (never connected, or closed); use "
                "'async with broker:' or 'await broker.connect()' first"
            )
