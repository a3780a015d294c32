"""Guarantees: the named, documented promises each conformance test checks.

Every conformance test is an ``async def`` body decorated with :func:`guarantee`, which
registers its stable id and level, marks it for pytest (``chicory_guarantee``), and turns it
into a plain synchronous test that runs the body in its own event loop. Tests are therefore
independent of whichever async pytest plugin (or none) the plugin author's project uses.
"""

from __future__ import annotations

import abc
import enum
import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, TypeVar

import anyio
import attrs
import pytest

__all__ = ["GUARANTEES", "MARKER", "EnvFactory", "Guarantee", "Level", "guarantee"]

MARKER: Final = "chicory_guarantee"
"""Name of the pytest marker carried by every conformance test."""

CLEANUP_SECONDS: Final = 30.0
"""How long closing a test's brokers may take after the test body finished."""

_Env = TypeVar("_Env")


class Level(enum.StrEnum):
    """How binding a guarantee is (RFC 2119 words)."""

    MUST = "MUST"
    SHOULD = "SHOULD"


@attrs.frozen(kw_only=True)
class Guarantee:
    """One documented promise.

    Attributes:
        id: Stable id, listed in ``docs/conformance.md`` (for example ``settle.ack_removes``).
        level: ``MUST`` or ``SHOULD``.
        summary: The first line of the test's docstring.
        requires: Capability names the guarantee needs; without them the test is skipped.
        area: The suite class the test belongs to.
    """

    id: str
    level: Level
    summary: str
    requires: tuple[str, ...]
    area: str


GUARANTEES: dict[str, Guarantee] = {}
"""Every guarantee defined by an imported suite module, by id."""


class EnvFactory(abc.ABC):
    """Builds the per-test environment from a harness fixture (one subclass per harness kind).

    Attributes:
        fixture: Name of the harness fixture the environment is built from.
    """

    fixture: str

    @abc.abstractmethod
    def skip_reason(self, harness: Any, requires: Sequence[str]) -> str | None:
        """Why the test cannot run against ``harness`` (a missing capability), if it cannot."""

    def known_failure(self, harness: Any, gid: str) -> str | None:
        """Why ``harness`` expects guarantee ``gid`` to fail, if it declares so."""
        known: str | None = getattr(harness, "known_failures", {}).get(gid)
        return known

    @abc.abstractmethod
    def timeout(self, harness: Any) -> float:
        """Seconds the whole test may take."""

    @abc.abstractmethod
    async def open(self, harness: Any, stack: AsyncExitStack) -> Any:
        """Create the environment; register its clean-up on ``stack``."""


def _sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested task-group wrappers, or the group if there are more.

    Task groups wrap a failing test's assertion; unwrapping it makes the report start with
    the assertion (and the notes Hypothesis attaches to it) instead of the wrapper.
    """
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return group if isinstance(inner, BaseExceptionGroup) else inner


def guarantee(
    gid: str,
    level: Level,
    *,
    env: EnvFactory,
    requires: Sequence[str] = (),
) -> Callable[[Callable[[Any, _Env], Awaitable[None]]], Callable[..., None]]:
    """Declare a conformance test for guarantee ``gid``.

    The decorated ``async def test_x(self, env)`` becomes ``def test_x(self, request)``: it
    looks up the harness fixture, skips with a reason naming the capability when the harness
    declares it lacks one of ``requires``, then runs the body with a fresh environment under
    the harness's timeout.

    Args:
        gid: Stable guarantee id.
        level: ``Level.MUST`` or ``Level.SHOULD``.
        env: How to build the test environment from the harness.
        requires: Capability names (attributes of the declared capabilities) needed.

    Returns:
        A decorator producing the synchronous pytest test function.
    """

    def decorate(body: Callable[[Any, _Env], Awaitable[None]]) -> Callable[..., None]:
        doc = inspect.getdoc(body) or ""
        if not doc.startswith(level.value):
            raise ValueError(f"the docstring of guarantee {gid!r} must start with {level.value!r}")
        area = body.__qualname__.partition(".")[0]
        if gid in GUARANTEES and GUARANTEES[gid].area != area:
            raise ValueError(f"guarantee id {gid!r} is defined twice")
        GUARANTEES[gid] = Guarantee(
            id=gid,
            level=level,
            summary=doc.splitlines()[0],
            requires=tuple(requires),
            area=area,
        )

        def test(self: Any, request: pytest.FixtureRequest) -> None:
            __tracebackhide__ = True
            harness = request.getfixturevalue(env.fixture)
            reason = env.skip_reason(harness, requires)
            if reason is not None:
                pytest.skip(f"{gid}: {reason}")
            known = env.known_failure(harness, gid)
            if known is not None:
                request.applymarker(pytest.mark.xfail(reason=f"{gid}: {known}", strict=True))
            limit = env.timeout(harness)

            async def main() -> None:
                with anyio.move_on_after(limit + CLEANUP_SECONDS) as outer:
                    async with AsyncExitStack() as stack:
                        environment = await env.open(harness, stack)
                        with anyio.move_on_after(limit) as scope:
                            await body(self, environment)
                if scope.cancelled_caught:
                    pytest.fail(
                        f"{gid}: the test did not finish within {limit} s; the broker hung "
                        "or never delivered what it had to",
                        pytrace=False,
                    )
                if outer.cancelled_caught:
                    pytest.fail(f"{gid}: closing the broker hung", pytrace=False)

            try:
                anyio.run(main)
            except BaseExceptionGroup as group:
                raise _sole_error(group) from None

        test.__name__ = body.__name__
        test.__qualname__ = body.__qualname__
        test.__doc__ = body.__doc__
        test.__module__ = body.__module__
        marked: Callable[..., None] = getattr(pytest.mark, MARKER)(gid, level.value)(
            pytest.mark.usefixtures(env.fixture)(test)
        )
        return marked

    return decorate
