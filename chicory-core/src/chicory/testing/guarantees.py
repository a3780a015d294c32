"""Guarantees: the named, documented promises each conformance test checks.

Every conformance test is an ``async def`` body decorated with :func:`guarantee`, which
registers its stable id and level, marks it for pytest (``chicory_guarantee``), and turns it
into a plain synchronous test that runs the body in its own event loop. Tests are therefore
independent of whichever async pytest plugin (or none) the plugin author's project uses.

A test has three possible verdicts besides passing, decided in this order:

* **skip**: the broker declares it lacks a capability the guarantee needs (``requires``).
  Nothing else ever skips a test.
* **ERROR**: the guarantee cannot be checked here: the harness fixture is missing or wrong,
  or something the test needs is not installed or not configured (``needs``: a result
  backend, the reference broker, a way to sever a connection). The message says how to fix
  it. The pytest plugin decides this at setup, so pytest reports an error, not a failure.
* **FAIL**: the broker did something other than what the guarantee promises. The message
  says what was expected and what the broker did; frames of anyio, asyncio and pytest are
  cut from the traceback, so it starts in the suite's code.

A guarantee also names the guarantees it rests on (``rests_on``): when one of those fails
too, the report lists this one as a consequence, so the root cause is read first.
"""

from __future__ import annotations

import abc
import enum
import inspect
import types
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Final, TypeVar

import anyio
import attrs
import pytest

__all__ = [
    "GUARANTEES",
    "MARKER",
    "READY_CHECKS",
    "EnvFactory",
    "Guarantee",
    "Level",
    "guarantee",
    "trim_traceback",
]

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
        requires: Capability expressions the guarantee needs; without them the test is
            skipped. Each is a capability name (true when the capability is declared),
            ``name=value``, or alternatives joined by ``|``.
        area: The public suite class the test belongs to.
        rests_on: Ids of the guarantees this one builds on; if one of them fails too, a
            failure of this one is reported as its consequence.
        needs: What the test needs besides the broker (``result_backend``, ``oracle``,
            ``sever``); when it is missing the test is an ERROR saying how to provide it.
    """

    id: str
    level: Level
    summary: str
    requires: tuple[str, ...]
    area: str
    rests_on: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


GUARANTEES: dict[str, Guarantee] = {}
"""Every guarantee defined by an imported suite module, by id."""

READY_CHECKS: dict[str, tuple[str, Callable[[Any], None]]] = {}
"""For each guarantee id, its harness fixture and the check run with that harness before its
test: it skips, fails (an ERROR at setup), or lets the test go ahead."""


class EnvFactory(abc.ABC):
    """Builds the per-test environment from a harness fixture (one subclass per harness kind).

    Attributes:
        fixture: Name of the harness fixture the environment is built from.
    """

    fixture: str

    @abc.abstractmethod
    def check_harness(self, harness: Any) -> None:
        """Fail (an ERROR at setup) if the fixture returned something that is no harness."""

    @abc.abstractmethod
    def skip_reason(self, harness: Any, requires: Sequence[str]) -> str | None:
        """Why the test cannot run against ``harness`` (a missing capability), if it cannot."""

    def unmet_need(self, harness: Any, need: str) -> str | None:
        """What is missing for ``need`` and how to provide it, or None if it is there."""
        return None

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


_PLUMBING: Final = frozenset(
    {"anyio", "asyncio", "_pytest", "pluggy", "contextlib", "concurrent", "threading", "sniffio"}
)
"""Top-level modules whose frames say nothing about a broker; trimmed from failures."""


def _is_plumbing(frame: types.FrameType) -> bool:
    module = str(frame.f_globals.get("__name__", ""))
    return module.partition(".")[0] in _PLUMBING or module == __name__


def trim_traceback(exc: BaseException) -> BaseException:
    """Drop the event loop's and pytest's frames from ``exc``'s traceback (and its causes').

    Returns:
        ``exc`` itself, its traceback rebuilt from the frames that remain.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kept: list[types.TracebackType] = []
        tb = current.__traceback__
        while tb is not None:
            if not _is_plumbing(tb.tb_frame):
                kept.append(tb)
            tb = tb.tb_next
        rebuilt: types.TracebackType | None = None
        for item in reversed(kept):
            rebuilt = types.TracebackType(rebuilt, item.tb_frame, item.tb_lasti, item.tb_lineno)
        current.__traceback__ = rebuilt
        current = current.__cause__ or current.__context__
    return exc


def guarantee(
    gid: str,
    level: Level,
    *,
    env: EnvFactory,
    requires: Sequence[str] = (),
    rests_on: Sequence[str] = (),
    needs: Sequence[str] = (),
    area: str | None = None,
    time_scale: float = 1.0,
) -> Callable[[Callable[[Any, _Env], Awaitable[None]]], Callable[..., None]]:
    """Declare a conformance test for guarantee ``gid``.

    The decorated ``async def test_x(self, env)`` becomes ``def test_x(self, request)``: it
    looks up the harness fixture, skips with a reason naming the capability when the harness
    declares it lacks one of ``requires``, fails with instructions when one of ``needs`` is
    missing, then runs the body with a fresh environment under the harness's timeout.

    Args:
        gid: Stable guarantee id.
        level: ``Level.MUST`` or ``Level.SHOULD``.
        env: How to build the test environment from the harness.
        requires: Capability expressions needed (see :attr:`Guarantee.requires`).
        rests_on: Guarantee ids this one builds on.
        needs: What the test needs besides the broker (see :attr:`Guarantee.needs`).
        area: The public suite the test belongs to (default: the class defining it; a
            mixin of guarantees names the suite it is mixed into).
        time_scale: The test may take this many times the harness's timeout (a test that
            tries many operation sequences, not one behaviour).

    Returns:
        A decorator producing the synchronous pytest test function.
    """

    def decorate(body: Callable[[Any, _Env], Awaitable[None]]) -> Callable[..., None]:
        doc = inspect.getdoc(body) or ""
        if not doc.startswith(level.value):
            raise ValueError(f"the docstring of guarantee {gid!r} must start with {level.value!r}")
        suite = area or body.__qualname__.partition(".")[0]
        if gid in GUARANTEES and GUARANTEES[gid].area != suite:
            raise ValueError(f"guarantee id {gid!r} is defined twice")
        GUARANTEES[gid] = Guarantee(
            id=gid,
            level=level,
            summary=" ".join(doc.split("\n\n", 1)[0].split()),
            requires=tuple(requires),
            area=suite,
            rests_on=tuple(rests_on),
            needs=tuple(needs),
        )

        def ready(harness: Any) -> None:
            env.check_harness(harness)
            reason = env.skip_reason(harness, requires)
            if reason is not None:
                pytest.skip(f"{gid}: {reason}")
            for need in needs:
                problem = env.unmet_need(harness, need)
                if problem is not None:
                    pytest.fail(
                        f"{gid} ({level.value}) cannot be checked: {problem}", pytrace=False
                    )

        READY_CHECKS[gid] = (env.fixture, ready)

        def test(self: Any, request: pytest.FixtureRequest) -> None:
            __tracebackhide__ = True
            harness = request.getfixturevalue(env.fixture)
            ready(harness)  # done at setup already when the pytest plugin is loaded
            known = env.known_failure(harness, gid)
            if known is not None:
                request.applymarker(pytest.mark.xfail(reason=f"{gid}: {known}", strict=True))
            limit = env.timeout(harness) * time_scale

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
                raise trim_traceback(_sole_error(group)) from None
            except Exception as exc:
                raise trim_traceback(exc) from None

        test.__name__ = body.__name__
        test.__qualname__ = body.__qualname__
        test.__doc__ = body.__doc__
        test.__module__ = body.__module__
        marked: Callable[..., None] = getattr(pytest.mark, MARKER)(gid, level.value)(
            pytest.mark.usefixtures(env.fixture)(test)
        )
        return marked

    return decorate
