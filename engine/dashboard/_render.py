"""Pages from Jinja templates: times as ISO 8601 with their zone, links under the mount
prefix, values as indented JSON."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Router

from .._cli_queues import limits_text, seconds_text
from ..core._types import from_ms
from ._auth import Sessions, template_auth
from ._config import DashboardConfig

TEMPLATES = Path(__file__).parent / "templates"
#: A value longer than this (as JSON) is cut on the page, with a note.
MAX_VALUE_CHARS = 20_000


class Renderer:
    def __init__(self, config: DashboardConfig, sessions: Sessions, router: Router) -> None:
        self.config = config
        self.sessions = sessions
        self.router = router
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            when=self.when,
            when_ms=lambda value: self.when(value, precise=True),
            duration_ms=duration_ms,
            seconds=seconds_text,
            compact=compact_duration,
            json=json_text,
            limits=lambda declaration, name: limits_text(name, declaration),
        )
        self.env = env

    def when(self, value: datetime | int | str | None, *, precise: bool = False) -> str:
        """ISO 8601 with the zone: the server's local one, or UTC (``utc=True``)."""
        moment = as_datetime(value)
        if moment is None or moment.timestamp() == 0:  # 0: an unreadable record's times
            return "-"
        shown = moment.astimezone(UTC) if self.config.utc else moment.astimezone()
        text = shown.isoformat(timespec="milliseconds" if precise else "seconds")
        return text.replace("+00:00", "Z") if self.config.utc else text

    def url(
        self, request: Request, name: str, query: Mapping[str, Any] | None = None, **params: Any
    ) -> str:
        """A path to route ``name`` that works under any mount prefix (``root_path``)."""
        path = str(self.router.url_path_for(name, **params))
        root = request.scope.get("root_path", "") or ""
        kept = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return root + path + ("?" + urllib.parse.urlencode(kept) if kept else "")

    def page(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        def url(name: str, query: Mapping[str, Any] | None = None, **params: Any) -> str:
            return self.url(request, name, query, **params)

        full = {
            **template_auth(request, self.sessions),
            "config": self.config,
            "url": url,
            "request": request,
            "nav": template.removesuffix(".html"),
            **context,
        }
        html = self.env.get_template(template).render(full)
        return HTMLResponse(html, status_code=status, headers=headers)


def as_datetime(value: datetime | int | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return from_ms(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def duration_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.1f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    return seconds_text(value / 1000)


def compact_duration(seconds: float) -> str:
    """A duration as the stuck filter reads it back: ``2h``, ``15m``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def json_text(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > MAX_VALUE_CHARS:
        return text[:MAX_VALUE_CHARS] + f"\n... ({len(text) - MAX_VALUE_CHARS} more characters)"
    return text
