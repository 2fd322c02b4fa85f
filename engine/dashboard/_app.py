"""``create_app``: the dashboard as an ASGI application (Starlette).

The app is a client of the store: it reads records and logs through a
``durably.aio.Client`` it opens in its lifespan (or through a face the host already
holds open), and every action goes through that face's calls, so the store's worker
carries it out (``client.operate``) exactly as for ``durably retry``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..aio import Client, Engine
from ..core._errors import ConfigurationError, DurablyError, StoreError
from ._actions import Actions
from ._auth import Gate
from ._config import DashboardConfig
from ._pages import Pages
from ._render import Renderer
from ._state import Dashboard, Face


def create_app(
    store: str | os.PathLike[str] | Face,
    *,
    token: str | None = None,
    operator: str | None = None,
    utc: bool = False,
    stuck_after: float = 3600.0,
    page_size: int = 50,
    live_interval: float = 1.0,
    session_max_age: float = 12 * 3600.0,
    allowed_hosts: Sequence[str] | None = None,
    title: str = "durably",
) -> Starlette:
    """The dashboard as an ASGI app, to serve (``durably dashboard``) or to mount.

    ``store`` is a store path (the app opens a ``durably.aio.Client`` on it in its
    lifespan) or a ``durably.aio.Client``/``durably.aio.Engine`` the host keeps open
    (a worker app that serves its own dashboard: one process cannot open a store twice).
    ``token`` turns the login on: the form asks for it and for the operator's name, which
    every action records as ``by``. Without a token nobody logs in and actions are
    recorded as ``operator`` (default ``dashboard:$USER``): serve it on loopback only, or
    behind the host's own authentication. ``stuck_after`` (seconds) is the default
    threshold of the "needs attention" page; ``utc`` shows times in UTC instead of the
    server's zone. ``allowed_hosts`` limits the ``Host`` headers answered.
    """
    if not isinstance(store, Client | Engine | str | os.PathLike):
        raise ConfigurationError(
            "create_app(store=) is a store path, or an open durably.aio.Client or Engine"
        )
    config = DashboardConfig(
        token=token,
        operator=operator,
        utc=utc,
        stuck_after_s=float(stuck_after),
        page_size=page_size,
        live_interval_s=float(live_interval),
        session_max_age_s=float(session_max_age),
        allowed_hosts=None if allowed_hosts is None else tuple(h.lower() for h in allowed_hosts),
        title=title,
    )
    dashboard = Dashboard(store, config)
    app = Starlette(
        lifespan=dashboard.lifespan,
        middleware=[Middleware(Gate, sessions=dashboard.sessions)],
    )
    renderer = Renderer(config, dashboard.sessions, app.router)
    app.router.routes.extend(_routes(Pages(dashboard, renderer), Actions(dashboard, renderer)))
    _error_pages(app, renderer)
    app.state.dashboard = dashboard
    return app


def _routes(pages: Pages, actions: Actions) -> list[Route]:
    return [
        Route("/", pages.executions, name="executions"),
        Route("/executions/{execution_id}", pages.execution, name="execution"),
        Route("/executions/{execution_id}/live", pages.live, name="live"),
        Route("/executions/{execution_id}/{action}", actions.act, methods=["POST"], name="act"),
        Route("/attention", pages.attention, name="attention"),
        Route("/schedules", pages.schedules, name="schedules"),
        Route(
            "/schedules/{schedule_id}/{action}",
            actions.schedule,
            methods=["POST"],
            name="schedule_act",
        ),
        Route("/queues", pages.queues, name="queues"),
        Route("/workers", pages.workers, name="workers"),
        Route("/login", actions.login_form, methods=["GET"], name="login"),
        Route("/login", actions.login, methods=["POST"]),
        Route("/logout", actions.logout, methods=["POST"], name="logout"),
    ]


def _error_pages(app: Starlette, renderer: Renderer) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        context = {"status": exc.status_code, "message": exc.detail}
        return renderer.page(request, "error.html", context, exc.status_code)

    async def durably_error(request: Request, exc: Exception) -> Response:
        # A read the store refused (a damaged store, a store error): say what it was.
        status = 503 if isinstance(exc, StoreError) else 500
        return renderer.page(request, "error.html", {"status": status, "message": str(exc)}, status)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(DurablyError, durably_error)
