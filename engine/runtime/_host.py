"""What both trio faces (``Engine`` and ``Client``) do at their edges: refuse the wrong
host, and leave their nursery showing the body's own exception."""

from __future__ import annotations

import asyncio
from typing import Any

import trio

from ..core._errors import ConfigurationError


def require_trio(face: str) -> None:
    """Refuse to open a trio face outside trio, naming the face that fits the host."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        pass
    else:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise ConfigurationError(
            f"durably.{face} runs under trio (trio.run); from synchronous code use "
            "durably.sync.Client"
        ) from None
    raise ConfigurationError(
        f"durably.{face} runs under trio, and this code runs under asyncio: use "
        f"durably.aio.{face} (same arguments, awaitable from asyncio)"
    )


async def exit_nursery(
    cm: Any,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: Any,
) -> bool | None:
    """Leave a face's nursery, showing the body's own exception unwrapped.

    The background tasks do not fail on their own, so a group holding only the body's
    exception is that exception: users should catch ``UnknownExecutionError``, not a group.
    """
    try:
        result: bool | None = await cm.__aexit__(exc_type, exc, tb)
        return result
    except BaseExceptionGroup as group:
        if exc is not None and group.exceptions == (exc,):
            raise exc from None
        raise
