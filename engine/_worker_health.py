"""The worker's health endpoints: ``GET /healthz`` and ``GET /readyz`` over HTTP.

A tiny ASGI app served by hypercorn's trio worker in the worker's own event loop (the
``worker`` extra). ``/healthz`` answers 200 while the process's loop runs; ``/readyz``
answers 200 only while the engine runs with its recovery done, 503 before (opening the
store, recovering) and once a drain has begun, so that a load balancer or an
orchestrator stops sending work before the worker stops taking it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, cast

import attrs
import trio

from .core._errors import ConfigurationError, DurablyError

if TYPE_CHECKING:
    from ._engine import Engine

Phase = Literal["starting", "ready", "draining", "stopping"]

log = logging.getLogger("durably.worker")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HealthBindError(ConfigurationError):
    """The health endpoints cannot listen where asked (the port is taken, say)."""


@attrs.define
class WorkerState:
    """Where the worker is in its life, for the endpoints to report."""

    phase: Phase = "starting"
    engine: Engine | None = None

    def document(self) -> dict[str, Any]:
        """``status`` (the phase) and, while the engine runs, its figures."""
        body: dict[str, Any] = {"status": self.phase}
        engine = self.engine
        if engine is None or self.phase == "stopping":
            return body
        try:
            stats = engine.statistics()
        except DurablyError:  # it stopped meanwhile
            return body
        body.update(live=stats.live, queued=stats.queued, peak_live=stats.peak_live)
        body["timers_fired"] = stats.timers_fired
        report = engine.last_recovery
        if report is not None:
            body["recovery"] = {
                "resumed": report.resumed,
                "parked": report.parked,
                "woken": report.woken,
                "queued": report.queued,
                "quarantined": len(report.quarantined),
                "unknown_workflows": list(report.unknown_workflows),
            }
        return body


class HealthApp:
    """The ASGI app: the two endpoints, 404 for any other path, 405 for a method other
    than GET or HEAD."""

    def __init__(self, state: WorkerState) -> None:
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path not in ("/healthz", "/readyz"):
            status, body = 404, {"error": "not found: GET /healthz or /readyz"}
        elif method not in ("GET", "HEAD"):
            status, body = 405, {"error": f"{path} answers GET"}
        elif path == "/healthz":
            status, body = 200, {"status": "alive", "phase": self.state.phase}
        else:
            body = self.state.document()
            status = 200 if self.state.phase == "ready" else 503
        payload = json.dumps(body, sort_keys=True).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_health(
    state: WorkerState,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the endpoints on ``host:port`` until cancelled; started with the URL bound
    (``port`` 0 takes a free port); ``HealthBindError`` if it cannot listen there."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    if TYPE_CHECKING:
        from hypercorn.typing import ASGIFramework

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # probes every few seconds would drown the log
    # Its own start-up line ("Running on ... CTRL + C to quit") is replaced by ours.
    errors = logging.getLogger("durably.worker.http")
    errors.setLevel(logging.WARNING)
    config.errorlog = errors
    config.graceful_timeout = 0.5

    app = cast("ASGIFramework", HealthApp(state))
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(functools.partial(serve, app, config))
            task_status.started(binds[0])
    except* OSError as group:
        raise HealthBindError(
            f"cannot serve the health endpoints on {config.bind[0]}: {sole(group)}"
        ) from None


def sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a group (of groups) holds, or the group if it holds more."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else group
