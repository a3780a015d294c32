"""Group joins: the result-backend power a group needs when something waits for it.

When the last step of a group member finishes, its worker records the member's outcome
under the group id and learns, in the same atomic operation, whether every member has now
finished. Each member writes its own index, so a member recorded twice (its step was
redelivered) still counts once; the operation returns the whole group, in member order, to
every call made once all members are in, so a worker that died between the join and the
publish of what follows is replaced by the redelivery of its step, which joins again and
publishes it.

A result backend offers this by implementing :class:`GroupJoins` (the memory and Redis
backends do; the conformance suite's ``GroupJoinSuite`` holds a backend to it). Sending a
flow that needs a join to an app whose backend lacks it raises
:class:`~chicory.errors.CapabilityError`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from chicory.backend import ResultBackend
from chicory.errors import CapabilityError

__all__ = ["GroupJoins", "joins_of"]


@runtime_checkable
class GroupJoins(Protocol):
    """A result backend that joins group members atomically.

    Every method may raise :class:`~chicory.errors.ResultBackendError` when the backend
    cannot be reached, and may be cancelled (a cancelled ``join`` may or may not have
    recorded its member).
    """

    async def join(
        self, group_id: str, index: int, size: int, data: bytes, *, ttl: float
    ) -> list[bytes] | None:
        """Record member ``index`` (0-based) of the ``size`` members of ``group_id`` as
        ``data``, replacing an earlier record of that index, and keep the group for
        ``ttl`` seconds.

        Returns:
            Atomically with the write: every member's record in index order if all
            ``size`` are now recorded, else ``None``.

        Raises:
            ValueError: ``index`` is not in ``range(size)``, or ``ttl`` is not positive.
        """
        ...


def joins_of(backend: ResultBackend, *, needed_for: str) -> GroupJoins:
    """Return ``backend`` as a :class:`GroupJoins`, or say why it is not one.

    Raises:
        CapabilityError: the backend cannot join groups.
    """
    if not isinstance(backend, GroupJoins):
        raise CapabilityError(
            f"{needed_for} needs a result backend that joins groups, and {backend!r} does "
            "not (it has no join method); use the memory:// or redis:// result backend, or "
            "a plugin that offers joins"
        )
    return backend
