"""Workflow definitions: ``@durably.workflow(name, ...)`` on an async function."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._retry import Retry

I = TypeVar("I")  # noqa: E741 - input, by the convention of generic type names
O = TypeVar("O")  # noqa: E741

#: The first parameter of a workflow function: a ``durably.Context`` at run time. The core
#: does not import the runtime (imports flow one way), so it is typed loosely here; the
#: input and the result keep their types.
Context = Any


class WorkflowDefinition(Generic[I, O]):
    """A registered workflow: its stable name, its function, its options.

    The name (not the function) is what the log records: renaming the function is safe,
    renaming the workflow is a new workflow. Calling the definition calls the function,
    so it stays testable as a plain coroutine function.
    """

    def __init__(
        self,
        fn: Callable[[Context, I], Awaitable[O]],
        *,
        name: str,
        category: str | None = None,
        defaults: Any = None,
        version: int = 1,
        retry: Retry | None = None,
        timeout: float | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"workflow {name!r}: {fn!r} is not an async function; write `async def`"
            )
        if not name or "\x00" in name:
            raise ConfigurationError("a workflow name must be a non-empty string without NUL")
        if timeout is not None and timeout <= 0:
            raise ConfigurationError(f"workflow {name!r}: timeout must be positive seconds")
        self.fn = fn
        self.name = name
        self.category = category
        self.defaults = defaults
        self.version = version
        self.retry = retry
        self.timeout = timeout
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        hints = _hints(fn)
        params = list(inspect.signature(fn).parameters.values())
        self.input_type: Any = Any
        if len(params) >= 2:
            self.input_type = hints.get(params[1].name, Any)
        ret = hints.get("return", Any)
        self.output_type: Any = Any if ret is type(None) else ret

    def __call__(self, ctx: Context, data: I) -> Awaitable[O]:
        return self.fn(ctx, data)

    def __repr__(self) -> str:
        return f"<workflow {self.name!r} v{self.version}>"


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def workflow(
    name: str,
    *,
    category: str | None = None,
    defaults: Any = None,
    version: int = 1,
    retry: Retry | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[[Context, I], Awaitable[O]]], WorkflowDefinition[I, O]]:
    """Declare an async function ``fn(ctx, input)`` as a durable workflow named ``name``.

    ``defaults`` is the input ``engine.describe`` uses when given none. ``retry`` is the
    default retry policy of the workflow's steps; ``timeout`` (seconds) bounds the whole
    execution, durably: it fails with a timeout once that much engine time has passed
    since it started.
    """

    def wrap(fn: Callable[[Context, I], Awaitable[O]]) -> WorkflowDefinition[I, O]:
        return WorkflowDefinition(
            fn,
            name=name,
            category=category,
            defaults=defaults,
            version=version,
            retry=retry,
            timeout=timeout,
        )

    return wrap
