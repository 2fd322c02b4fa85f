"""Who may use the dashboard, and proof that a POST came from its own pages.

Rules of this module:

- A session is a signed cookie (HMAC-SHA256, stdlib ``hmac``): the operator's name, an
  expiry and a random nonce. It is ``HttpOnly`` and ``SameSite=Strict``, scoped to the
  app's path. With a token the key is derived from it (changing the token ends every
  session); without one the key is random per process and every visitor gets a session
  at once, named after the configured operator.
- Every POST passes two checks: an ``Origin`` (else ``Referer``) naming another host is
  refused before the app runs, and the form's ``csrf`` field must be the HMAC of the
  session's nonce (``checked_form``). A page of another site can neither read the cookie
  nor compute the field.
- Every response carries a content security policy with a per-response nonce (the
  pages' only script and style are inline and carry it), and may not be framed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from http.cookies import SimpleCookie
from typing import Any

import attrs
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._config import DashboardConfig

COOKIE = "durably_session"
#: The largest form body read (a signal's payload comes in a form).
MAX_FORM_BYTES = 16 * 1024 * 1024
#: Paths served without a session when a token is set.
_OPEN_PATHS = ("/login",)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@attrs.frozen
class Session:
    name: str
    nonce: str
    expires: int


class Sessions:
    """Issues and verifies session cookies and their CSRF tokens."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        if config.token is not None:
            self._key = hmac.new(
                config.token.encode(), b"durably-dashboard-session", hashlib.sha256
            ).digest()
        else:
            self._key = secrets.token_bytes(32)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, name: str) -> tuple[Session, str]:
        expires = int(time.time() + self.config.session_max_age_s)
        session = Session(name, secrets.token_hex(16), expires)
        encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
        payload = f"v1.{encoded}.{expires}.{session.nonce}"
        return session, f"{payload}.{self._sign(payload)}"

    def read(self, value: str | None) -> Session | None:
        if not value or value.count(".") != 4:
            return None
        payload, _, signature = value.rpartition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        _, encoded, expires, nonce = payload.split(".")
        try:
            name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            deadline = int(expires)
        except ValueError:
            return None
        if deadline < time.time():
            return None
        return Session(name, nonce, deadline)

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def token_matches(self, given: str) -> bool:
        token = self.config.token
        return token is not None and hmac.compare_digest(given.encode(), token.encode())


def cookie_header(request_scope: Scope, value: str, max_age: int) -> str:
    """A ``Set-Cookie`` value scoped to the app's path (its mount prefix)."""
    cookie: SimpleCookie = SimpleCookie()
    cookie[COOKIE] = value
    morsel = cookie[COOKIE]
    morsel["path"] = (request_scope.get("root_path", "") or "") + "/"
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    morsel["max-age"] = max_age
    if request_scope.get("scheme") == "https":
        morsel["secure"] = True
    return morsel.OutputString()


def route_path(scope: Scope) -> str:
    """The request's path within the app (without the mount prefix)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "") or ""
    return path[len(root) :] if root and path.startswith(root) else path


def _host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()


def foreign_origin(headers: Headers) -> str | None:
    """Why a state-changing request looks cross-site, or ``None`` if it does not.

    ``Origin`` (every current browser sends it on a POST) must name this very host;
    without it, ``Referer`` must. A request with neither (not a browser) still needs
    the form's CSRF field.
    """
    host = headers.get("host", "").lower()
    origin = headers.get("origin")
    if origin is not None:
        if origin == "null" or _host_of(origin) != host:
            return f"the request came from another origin ({origin}), not {host}"
        return None
    referer = headers.get("referer")
    if referer is not None and _host_of(referer) != host:
        return f"the request came from another page ({_host_of(referer)}), not {host}"
    return None


class Gate:
    """ASGI middleware: Host check, session, Origin check and response headers."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions
        self.config = sessions.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        nonce = scope["durably.nonce"] = secrets.token_urlsafe(16)
        set_cookie = scope.pop("durably.set_cookie", None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                _secure_headers(out, nonce)
                if set_cookie is not None:
                    out.append("set-cookie", set_cookie)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        allowed = self.config.allowed_hosts
        if allowed is not None:
            host = headers.get("host", "").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in allowed:
                return PlainTextResponse(
                    f"this dashboard answers to {', '.join(allowed)}, not Host {host!r}", 400
                )
        method = scope["method"]
        if method not in _SAFE_METHODS:
            why = foreign_origin(headers)
            if why is not None:
                return PlainTextResponse(f"refused: {why} (cross-site request)", 403)
        session = self.sessions.read(_cookie(headers))
        path = route_path(scope)
        if session is None:
            if self.config.token is not None:
                if path in _OPEN_PATHS:
                    scope["durably.session"] = None
                    return None
                if method in _SAFE_METHODS:
                    target = urllib.parse.quote(path or "/")
                    root = scope.get("root_path", "") or ""
                    return RedirectResponse(f"{root}/login?next={target}", 303)
                return PlainTextResponse("refused: log in first (no session)", 403)
            session, value = self.sessions.issue(self.config.default_operator)
            max_age = int(self.config.session_max_age_s)
            scope["durably.set_cookie"] = cookie_header(scope, value, max_age)
        scope["durably.session"] = session
        return None


def _cookie(headers: Headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = cookie.get(COOKIE)
    return None if morsel is None else morsel.value


def _secure_headers(out: MutableHeaders, nonce: str) -> None:
    out["content-security-policy"] = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    out["x-frame-options"] = "DENY"
    out["x-content-type-options"] = "nosniff"
    out["referrer-policy"] = "same-origin"
    out.setdefault("cache-control", "no-store")


def session_of(request: Request) -> Session | None:
    session: Session | None = request.scope.get("durably.session")
    return session


async def read_form(request: Request) -> dict[str, str]:
    """A url-encoded form (first value of each field), read with a size cap.

    Parsed with the standard library, so the dashboard needs no multipart parser.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(400, "send the form as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"the form is over {MAX_FORM_BYTES // (1 << 20)} MiB")
    try:
        fields = urllib.parse.parse_qs(
            body.decode(), keep_blank_values=True, max_num_fields=64, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(400, f"the form could not be read: {exc}") from None
    return {key: values[0] for key, values in fields.items()}


async def checked_form(request: Request, sessions: Sessions) -> tuple[Session, dict[str, str]]:
    """The form of a state-changing POST, once its CSRF field matches the session."""
    session = session_of(request)
    form = await read_form(request)
    if session is None:
        raise HTTPException(403, "refused: log in first (no session)")
    given = form.get("csrf", "")
    if not given or not hmac.compare_digest(given, sessions.csrf(session)):
        raise HTTPException(
            403,
            "refused: the form's CSRF token does not match your session (the page may be "
            "older than your session: reload it and try again)",
        )
    return session, form


def template_auth(request: Request, sessions: Sessions) -> dict[str, Any]:
    """What every page needs to render its forms and the header."""
    session = session_of(request)
    return {
        "session": session,
        "csrf": "" if session is None else sessions.csrf(session),
        "nonce": request.scope.get("durably.nonce", ""),
        "login_required": sessions.config.token is not None,
    }
