"""The forms that change something: operator actions, schedule pause and resume, login.

Each action runs through the store's face (``operate``, ``signal``,
``pause_schedule``...), so the store's worker carries it out, and it is recorded in the
execution's log with ``by`` (the session's operator name) and ``reason``. A signal
carries them with it: the event of the wait that takes it records them, so the trail
shows who sent it and why.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from typing import TYPE_CHECKING, Any, NoReturn

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..core._errors import (
    ConfigurationError,
    DurablyError,
    OperatorError,
    PayloadError,
    StoreError,
    UnknownExecutionError,
    UnknownScheduleError,
)
from ._auth import checked_form, cookie_header, read_form
from ._config import check_name
from ._render import Renderer

if TYPE_CHECKING:
    from ._state import Dashboard

log = logging.getLogger("durably.dashboard")

ACTIONS = ("retry", "retry_rollback", "cancel", "force_fail", "skip_step", "signal")
#: The longest reason kept (it goes into the log with the action).
MAX_REASON_CHARS = 1000
#: A wrong token costs this long, which makes guessing slow.
_LOGIN_DELAY_S = 0.5


def _fail(status: int, message: str) -> NoReturn:
    raise HTTPException(status, message)


def _json_field(text: str, what: str) -> Any:
    """Strict JSON from a form field (``NaN`` and ``Infinity`` refused, as the CLI does)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text or "null", parse_constant=refuse)
    except ValueError as exc:
        _fail(400, f'{what} is not valid JSON ({exc}); write JSON text, e.g. {{"ok": true}}')


def _status_of(exc: DurablyError) -> int:
    if isinstance(exc, UnknownExecutionError | UnknownScheduleError):
        return 404
    if isinstance(exc, PayloadError | ConfigurationError):
        return 400
    if isinstance(exc, StoreError):
        return 503
    return 409  # OperatorError and the rest: it does not fit the execution's state


class Actions:
    def __init__(self, dashboard: Dashboard, renderer: Renderer) -> None:
        self.dashboard = dashboard
        self.render = renderer
        self.sessions = dashboard.sessions

    async def act(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        action = request.path_params["action"]
        if action not in ACTIONS:
            _fail(404, f"no action {action!r}; one of: {', '.join(ACTIONS)}")
        session, form = await checked_form(request, self.sessions)
        reason = form.get("reason", "").strip()
        if not reason:
            _fail(400, "give a reason: it is recorded in the audit trail with the action")
        if len(reason) > MAX_REASON_CHARS:
            _fail(400, f"a reason is at most {MAX_REASON_CHARS} characters")
        face = self.dashboard.face()
        by = session.name
        query: dict[str, str] = {"done": action}
        try:
            if action == "signal":
                query["delivery"] = await self._signal(execution_id, form, by, reason)
            elif action == "skip_step":
                step_id = form.get("step_id", "").strip()
                if not step_id:
                    _fail(400, "choose the step to skip")
                result = _json_field(form.get("result", ""), "the step's result")
                await face.operate(
                    "skip_step", execution_id, step_id=step_id, result=result, by=by, reason=reason
                )
            else:
                await face.operate(action, execution_id, by=by, reason=reason)
        except DurablyError as exc:
            log.warning("%s of %s by %s refused: %s", action, execution_id, by, exc)
            _fail(_status_of(exc), f"{action} refused: {exc}")
        log.info("%s of %s by %s: %s", action, execution_id, by, reason)
        url = self.render.url(request, "execution", query, execution_id=execution_id)
        return RedirectResponse(url, 303)

    async def _signal(self, execution_id: str, form: dict[str, str], by: str, reason: str) -> str:
        name = form.get("name", "").strip()
        if not name:
            _fail(400, "give the signal's name")
        payload = _json_field(form.get("payload", ""), "the payload")
        dedup = form.get("dedup_key", "").strip() or None
        outcome = await self.dashboard.face().signal(
            execution_id, name, payload, dedup_key=dedup, by=by, reason=reason
        )
        if not outcome.accepted:
            raise OperatorError(f"signal {name!r} was rejected: {outcome.reason}")
        return outcome.delivery.value

    async def schedule(self, request: Request) -> Response:
        schedule_id = request.path_params["schedule_id"]
        action = request.path_params["action"]
        if action not in ("pause", "resume"):
            _fail(404, f"no schedule action {action!r}; pause or resume")
        session, _ = await checked_form(request, self.sessions)
        face = self.dashboard.face()
        try:
            if action == "pause":
                await face.pause_schedule(schedule_id)
            else:
                await face.resume_schedule(schedule_id)
        except DurablyError as exc:
            _fail(_status_of(exc), f"{action} refused: {exc}")
        log.info("%s schedule %s by %s", action, schedule_id, session.name)
        return RedirectResponse(self.render.url(request, "schedules", {"done": action}), 303)

    # --- login ---

    async def login_form(self, request: Request) -> Response:
        if self.dashboard.config.token is None:
            return RedirectResponse(self.render.url(request, "executions"), 303)
        return self._login_page(request, self._next(request.query_params.get("next")), "")

    def _login_page(
        self, request: Request, next_path: str, error: str, status: int = 200
    ) -> Response:
        name = self.dashboard.config.operator or ""
        return self.render.page(
            request, "login.html", {"next": next_path, "error": error, "name": name}, status
        )

    async def login(self, request: Request) -> Response:
        config = self.dashboard.config
        if config.token is None:
            return RedirectResponse(self.render.url(request, "executions"), 303)
        form = await read_form(request)
        next_path = self._next(form.get("next"))
        if not self.sessions.token_matches(form.get("token", "")):
            await asyncio.sleep(_LOGIN_DELAY_S)
            log.warning("a login with a wrong token (from %s)", request.client)
            return self._login_page(request, next_path, "That token is not this dashboard's.", 401)
        try:
            name = check_name(form.get("name", ""))
        except ConfigurationError as exc:
            return self._login_page(request, next_path, str(exc), 400)
        _, value = self.sessions.issue(name)
        root = request.scope.get("root_path", "") or ""
        response = RedirectResponse(root + next_path, 303)
        response.headers.append(
            "set-cookie", cookie_header(request.scope, value, int(config.session_max_age_s))
        )
        log.info("%s logged in", name)
        return response

    async def logout(self, request: Request) -> Response:
        session, _ = await checked_form(request, self.sessions)
        response = RedirectResponse(self.render.url(request, "login"), 303)
        response.headers.append("set-cookie", cookie_header(request.scope, "", 0))
        log.info("%s logged out", session.name)
        return response

    @staticmethod
    def _next(value: str | None) -> str:
        """Where to go after login: a path of this app only (no open redirect)."""
        if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
            return "/"
        parts = urllib.parse.urlsplit(value)
        if parts.scheme or parts.netloc:
            return "/"
        return value
