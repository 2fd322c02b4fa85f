"""The pages: executions, one execution (and its live fragment), what needs attention,
schedules and queues."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .._cli_queues import queue_document, queue_labels, queue_lines
from ..core._audit import AuditEntry
from ..core._errors import ConfigurationError
from ..core._shards import SHARDS, workers_of
from ..core._types import SignalDelivery, Status
from . import _read
from ._config import parse_duration
from ._render import Renderer, duration_ms

if TYPE_CHECKING:
    from ._state import Dashboard

STATUSES = [s.value for s in Status]
#: The most audit entries one page shows (the latest ones).
_MAX_ENTRIES = 1000
_ACTIVE = frozenset(s.value for s in Status if not s.terminal)
#: Audit data keys that hold times (ISO strings), shown in the page's zone.
_TIME_KEYS = ("wake_at", "retry_at", "deadline")
#: What the page says after an action (``?done=ACTION``).
NOTICES = {
    "retry": "Retried: it runs again from its log.",
    "retry_rollback": "Its rollback runs again.",
    "cancel": "Cancelled.",
    "force_fail": "Force-failed.",
    "skip_step": "The step was skipped: the execution goes on with the result given.",
    "signal": "Signal sent",
}


def allowed_actions(status: str) -> list[str]:
    """The actions that fit a status (the operator checks again when they run)."""
    actions = []
    if status == "failed":
        actions += ["retry", "skip_step"]
    if status == "retrying":
        actions.append("skip_step")
    if status == "compensation_failed":
        actions += ["retry_rollback", "force_fail"]
    if status in _ACTIVE:
        actions += ["signal", "cancel", "force_fail"]
    return actions


class Pages:
    def __init__(self, dashboard: Dashboard, renderer: Renderer) -> None:
        self.dashboard = dashboard
        self.render = renderer

    # --- executions ---

    async def executions(self, request: Request) -> Response:
        params = request.query_params
        filters = self._filters(request)
        store = self.dashboard.face().store
        query = params.get("q", "").strip()
        if query:
            found, listing = _read.search(store, query, filters)
            if found is not None:
                return RedirectResponse(
                    self.render.url(request, "execution", execution_id=found), 303
                )
        else:
            listing = _read.list_records(store, filters)
        shown = {k: params.get(k, "") for k in ("status", "workflow", "queue", "from", "to", "q")}
        next_query = None
        if listing.next_after is not None:
            next_query = {**shown, "limit": filters.limit, "after": listing.next_after}
        return self.render.page(
            request,
            "executions.html",
            {
                "listing": listing,
                "shown": shown,
                "statuses": STATUSES,
                "next_query": next_query,
                "first_query": {**shown, "limit": filters.limit} if filters.after else None,
                "hour_ago": self.render.when(int((time.time() - 3600) * 1000)),
            },
        )

    def _filters(self, request: Request) -> _read.Filters:
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
        try:
            limit = int(params.get("limit") or self.dashboard.config.page_size)
        except ValueError:
            raise HTTPException(400, "limit= is a whole number of executions per page") from None
        if not 1 <= limit <= 1000:
            raise HTTPException(400, "limit= is between 1 and 1000")
        return _read.Filters(
            status=status,
            workflow=params.get("workflow") or None,
            queue=params.get("queue") or None,
            created_from_ms=self._moment(params.get("from"), "from"),
            created_to_ms=self._moment(params.get("to"), "to"),
            after=params.get("after") or None,
            limit=limit,
        )

    def _moment(self, text: str | None, name: str) -> int | None:
        """A time from the filter form: ISO 8601; without a zone, the page's zone."""
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise HTTPException(
                400, f"{name}= is a time in ISO 8601 (2026-11-25T13:44), not {text!r}"
            ) from None
        if moment.tzinfo is None:
            moment = (
                moment.replace(tzinfo=UTC) if self.dashboard.config.utc else moment.astimezone()
            )
        return int(moment.timestamp() * 1000)

    # --- one execution ---

    async def execution(self, request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        detail = self._detail(execution_id)
        done = request.query_params.get("done")
        notice = NOTICES.get(done or "")
        delivery = request.query_params.get("delivery")
        if done == "signal" and delivery in {d.value for d in SignalDelivery}:
            notice = f"Signal sent: {delivery}."
        status = detail.execution.status.value
        return self.render.page(
            request,
            "execution.html",
            {
                **self._live_context(detail),
                "notice": notice,
                # An unreadable record cannot be acted on: it is restored from a backup.
                "actions": allowed_actions(status) if detail.record is not None else [],
                "interval_ms": int(self.dashboard.config.live_interval_s * 1000),
            },
        )

    async def live(self, request: Request) -> Response:
        """The part of the page that changes while it runs; 204 if nothing did."""
        execution_id = request.path_params["execution_id"]
        store = self.dashboard.face().store
        try:
            known = int(request.query_params.get("n", "-1"))
        except ValueError:
            known = -1
        if known >= 0:
            record = _read.detail_record(store, execution_id)
            if record is None:
                raise HTTPException(404, f"no execution {execution_id} in this store")
            same = _read.log_length(store, execution_id, known) == known
            if same and record.status == request.query_params.get("s"):
                return Response(status_code=204)
        detail = self._detail(execution_id)
        headers = {
            "x-durably-events": str(detail.events),
            "x-durably-status": detail.execution.status.value,
        }
        return self.render.page(request, "_live.html", self._live_context(detail), headers=headers)

    def _detail(self, execution_id: str) -> _read.Detail:
        detail = _read.detail(self.dashboard.face().store, execution_id)
        if detail is None:
            raise HTTPException(404, f"no execution {execution_id} in this store")
        return detail

    def _live_context(self, detail: _read.Detail) -> dict[str, Any]:
        queued = queue_document(detail.record)
        entries = detail.audit[-_MAX_ENTRIES:]
        return {
            "d": detail,
            "e": detail.execution,
            "active": detail.execution.status.value in _ACTIVE,
            "queue_fields": queue_labels(queued),
            "entries": [(entry, self._entry_text(entry)) for entry in entries],
            "hidden_entries": len(detail.audit) - len(entries),
        }

    def _entry_text(self, entry: AuditEntry) -> str:
        """An audit entry's data in one line, its times in the page's zone."""
        parts = []
        for key, value in entry.data.items():
            if value in (None, "", {}, []):
                continue
            if key in _TIME_KEYS and isinstance(value, str):
                value = self.render.when(value, precise=True)
            elif key == "error" and isinstance(value, dict):
                if value.get("type") is None:
                    continue  # a child that ended without one
                value = f"{value.get('type')}: {value.get('message')}"
            elif key == "duration_ms" and isinstance(value, int | float):
                key, value = "took", duration_ms(value)
            parts.append(f"{key}={value}")
        return ", ".join(parts)[:300]

    # --- what needs attention, schedules, queues ---

    async def attention(self, request: Request) -> Response:
        text = request.query_params.get("stuck")
        threshold = self.dashboard.config.stuck_after_s
        if text:
            try:
                threshold = parse_duration(text)
            except ConfigurationError as exc:
                raise HTTPException(400, f"stuck=: {exc}") from None
        now_ms = int(time.time() * 1000)
        found = _read.attention(self.dashboard.face().store, now_ms, threshold)
        return self.render.page(request, "attention.html", {"a": found, "stuck": text or ""})

    async def schedules(self, request: Request) -> Response:
        items = await self.dashboard.face().list_schedules()
        done = request.query_params.get("done")
        notice = {"pause": "Paused.", "resume": "Resumed."}.get(done or "")
        return self.render.page(request, "schedules.html", {"items": items, "notice": notice})

    async def workers(self, request: Request) -> Response:
        views, free = workers_of(self.dashboard.face().store.leases())
        now_ms = int(time.time() * 1000)
        rows = [(view, view.live(now_ms)) for view in views]
        return self.render.page(
            request, "workers.html", {"rows": rows, "free": free, "shards": SHARDS}
        )

    async def queues(self, request: Request) -> Response:
        store = self.dashboard.face().store
        lines = queue_lines(store, int(time.time() * 1000))
        return self.render.page(request, "queues.html", {"lines": lines})
