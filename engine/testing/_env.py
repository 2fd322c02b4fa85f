"""The virtual-time test environment: :func:`virtual_engine`, the default start instant,
and how the sync form of a check runs its async form."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import trio
import trio.testing

from durably.stores import MemoryStore, Store

from .._engine import Engine
from ..core._errors import ConfigurationError
from ..core._workflow import WorkflowDefinition
from ..runtime._clock import Clock

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Where virtual time starts by default: fixed, so that ``ctx.now()`` is the same in every
#: run of a check (and of every check).
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _require_mock_clock(what: str) -> None:
    if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        raise ConfigurationError(
            f"{what} needs virtual time: run it under trio.testing.MockClock (in pytest-trio, "
            "take the autojump_clock fixture), or call the sync variant, which does"
        )


def _sync_form(
    async_form: Callable[_P, Awaitable[_R]],
) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Make the decorated function the sync form of ``async_form``.

    The decorated function declares the signature (which must be ``async_form``'s) and the
    docstring; its body is never run. A call runs ``async_form`` with the same arguments in
    a fresh ``trio.run`` under a ``MockClock`` that jumps ahead whenever all tasks wait.
    """

    def decorate(declared: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(declared)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            return trio.run(
                functools.partial(async_form, *args, **kwargs),
                clock=trio.testing.MockClock(autojump_threshold=0),
            )

        return run

    return decorate


@asynccontextmanager
async def virtual_engine(
    *workflows: WorkflowDefinition[Any, Any],
    store: Store | None = None,
    start: datetime | None = None,
    clock: Clock | None = None,
    **options: Any,
) -> AsyncIterator[Engine]:
    """``async with virtual_engine(wf) as engine:``: an engine for tests, in virtual time.

    Runs on ``store`` (a fresh ``MemoryStore`` by default) with a clock that starts at
    ``start`` (:data:`DEFAULT_START` by default), so ``ctx.now()`` is reproducible. To
    restart an engine over the same store, pass the same ``store`` and ``clock`` again.
    Needs a ``MockClock`` (pytest-trio's ``autojump_clock`` fixture).
    """
    _require_mock_clock("virtual_engine")
    if clock is None:
        clock = Clock(start if start is not None else DEFAULT_START)
    async with Engine(
        store if store is not None else MemoryStore(),
        workflows=workflows,
        clock=clock,
        **options,
    ) as engine:
        yield engine
