"""Schedules: start a workflow once at a given time, or again and again (cron or interval).

A schedule is one record in the store's schedules table and, while it has a next fire, one
timer in the timers index (owner ``"schedule:" + id``, due at that fire). Every change
writes the record and swaps the timer in one transaction, so the index and the record never
disagree, and a schedule survives restarts like a sleeping execution does.

Fires are handled one at a time by the schedule actor (its own trio task, woken by the
scheduler actor). A fire first starts the execution, with an idempotency key made of the
schedule id and the fire time, then records it in the schedule. A crash between the two
leaves the timer in the index; on restart it fires again and the key returns the execution
already started: the same run is never started twice.

Cron expressions are matched against the wall clock of the schedule's timezone. Around DST
changes (see ``docs/scheduling.md``): a wall-clock time that does not exist that night fires
once, at the instant the clocks jump; a wall-clock time that occurs twice fires once, at its
first occurrence, unless the expression's hour field is ``*`` (then it fires in both
passes of the repeated hour, so ``*/30 * * * *`` keeps a steady 30-minute beat).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import trio

from durably.stores import (
    ACTIVE_STATUSES,
    AddTimer,
    DeleteSchedule,
    Notify,
    Op,
    PutSchedule,
    RemoveTimer,
    Timer,
)

from ..core import _codec
from ..core._errors import (
    ConfigurationError,
    CorruptRecordError,
    DurablyError,
    PayloadError,
    UnknownScheduleError,
    UnknownWorkflowError,
)
from ..core._records import INBOX_SIGNAL
from ..core._schedule import Schedule, ScheduleStatus
from ..core._types import from_ms
from ._cadence import (
    Cadence,
    Cadencing,
    Cron,
    Interval,
    Once,
    check_policies,
    check_schedule_id,
    epoch_ms,
    recurring,
    zone,
)

if TYPE_CHECKING:
    from ..core._workflow import WorkflowDefinition
    from ._ports import ScheduleHost

log = logging.getLogger("durably")

#: How many of the most recent execution ids a schedule record keeps.
MAX_LISTED_EXECUTIONS = 100
_OWNER = "schedule:"
_TIMER_ID = "next"
_FORMAT = 1


@attrs.frozen
class _Record:
    """The schedule as stored (JSON-shaped, times in epoch ms)."""

    id: str
    workflow: str
    input: Any
    status: str
    cron: str | None
    timezone: str | None
    interval_ms: int | None
    at_ms: int | None
    #: Interval schedules fire at ``anchor_ms + k * interval_ms``.
    anchor_ms: int | None
    catch_up: str
    overlap: str
    next_ms: int | None
    last_ms: int | None
    created_ms: int
    updated_ms: int
    #: Random per creation: part of each fire's idempotency key, so a schedule removed and
    #: created again under the same id never collides with its predecessor's executions.
    incarnation: str
    executions: tuple[str, ...] = ()
    runs: int = 0
    skipped: int = 0
    last_error: str | None = None

    def to_data(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=False)
        data["executions"] = list(self.executions)
        data["v"] = _FORMAT
        return data

    @classmethod
    def from_data(cls, schedule_id: str, data: Any) -> _Record:
        if not isinstance(data, dict) or data.get("v") != _FORMAT:
            raise CorruptRecordError(
                f"schedule {schedule_id!r} has an unknown record format; "
                "was it written by a newer durably?"
            )
        try:
            fields = {k: v for k, v in data.items() if k != "v"}
            fields["executions"] = tuple(fields.get("executions", ()))
            return cls(**fields)
        except TypeError as exc:
            raise CorruptRecordError(f"schedule {schedule_id!r} cannot be read: {exc}") from exc

    def view(self) -> Schedule:
        return Schedule(
            id=self.id,
            workflow=self.workflow,
            input=self.input,
            status=ScheduleStatus(self.status),
            cron=self.cron,
            timezone=self.timezone,
            interval=self.interval_ms / 1000 if self.interval_ms is not None else None,
            at=from_ms(self.at_ms) if self.at_ms is not None else None,
            catch_up=self.catch_up,  # type: ignore[arg-type]
            overlap=self.overlap,  # type: ignore[arg-type]
            next_fire_at=from_ms(self.next_ms) if self.next_ms is not None else None,
            last_fire_at=from_ms(self.last_ms) if self.last_ms is not None else None,
            created_at=from_ms(self.created_ms),
            updated_at=from_ms(self.updated_ms),
            executions=self.executions,
            runs=self.runs,
            skipped=self.skipped,
            last_error=self.last_error,
        )

    def timer(self) -> Timer | None:
        return None if self.next_ms is None else Timer(self.next_ms, _OWNER + self.id, _TIMER_ID)

    def cadence(self) -> Cadence:
        if self.cron is not None:
            return Cron(self.cron, zone(self.timezone or "UTC"))
        if self.interval_ms is not None:
            assert self.anchor_ms is not None
            return Interval(self.interval_ms, self.anchor_ms)
        assert self.at_ms is not None
        return Once(self.at_ms)

    def definition(self) -> tuple[Any, ...]:
        """What ``ensure_schedule`` compares to decide whether anything changed."""
        return (
            self.cron,
            self.timezone,
            self.interval_ms,
            self.at_ms,
            self.input,
            self.catch_up,
            self.overlap,
        )


class ScheduleManager:
    """Owns every schedule of one engine: the API's writes and the fires.

    One lock serialises all read-modify-write of schedule records (API calls and fires), so
    a fire never records over an update, and an update never resurrects a removed schedule.
    """

    def __init__(self, host: ScheduleHost) -> None:
        self.host = host
        self.store = host.parts.store
        self.clock = host.parts.clock
        #: Fires due before this (ms) were missed while no engine ran: catch-up applies.
        self.started_ms = self.clock.now_ms()
        self._lock = trio.Lock()
        self._due_send, self._due_recv = trio.open_memory_channel[Timer](math.inf)

    # --- the actor ---

    def due(self, timer: Timer) -> None:
        """The scheduler actor's callback for a schedule's timer."""
        self._due_send.send_nowait(timer)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.arm_from_records()
        task_status.started()
        async for timer in self._due_recv:
            try:
                await self._fire(timer.owner[len(_OWNER) :], timer.due_ms)
            except DurablyError as exc:
                if self.host.closing():
                    return  # shutting down mid-fire: the next engine fires it again
                # The timer stays in the index: the fire is retried by the next engine.
                log.error("schedule %s: fire at %s failed: %s", timer.owner, timer.due_ms, exc)

    def arm_from_records(self) -> None:
        """Arm each active schedule's next fire from its record, at start.

        The timers index holds it too, but a timer key carries no checksum: a damaged one
        must not make a schedule miss its fires. A fire checks its record (``_fire``), so
        a damaged entry fires nothing, and a timer armed twice is armed once.
        """
        try:
            items = self.store.list_schedules()
        except DurablyError as exc:
            log.error("schedules cannot be read, their fires wait on the timers index: %s", exc)
            return
        for sid, data in items:
            try:
                record = _Record.from_data(sid, data)
            except DurablyError as exc:
                log.error("schedule %s cannot be read: %s", sid, exc)
                continue
            self._arm(record)

    def _arm(self, record: _Record) -> None:
        timer = record.timer()
        if timer is not None and record.status == ScheduleStatus.ACTIVE:
            self.host.parts.scheduler.arm(timer)  # (a worker of many: if it owns it)

    def changed(self, sid: str) -> None:
        """Another worker of many changed the schedule: arm its next fire if it is ours."""
        try:
            record = self._load(sid)
        except DurablyError as exc:
            log.error("schedule %s cannot be read: %s", sid, exc)
            return
        if record is not None:
            self._arm(record)

    async def _fire(self, sid: str, due: int) -> None:
        async with self._lock:
            record = self._load(sid)
            if record is None or record.status != ScheduleStatus.ACTIVE or record.next_ms != due:
                return  # a timer left in the heap by an update, pause or removal
            if self.host.parts.registry.get(record.workflow) is None:
                log.warning(
                    "schedule %s: workflow %r is not registered; it fires once an engine "
                    "registers it",
                    sid,
                    record.workflow,
                )
                return
            now = self.clock.now_ms()
            cadence = record.cadence()
            fire_at: int | None
            missed = due < self.started_ms
            if record.catch_up == "all":
                fire_at, next_ms = due, cadence.next_after(due)
            elif record.catch_up == "skip" and missed:
                fire_at, next_ms = None, cadence.next_after(self.started_ms - 1)
            else:
                fire_at, next_ms = cadence.last_at_or_before(now), cadence.next_after(now)
            changes: dict[str, Any] = {"next_ms": next_ms, "updated_ms": now}
            if next_ms is None:
                changes["status"] = ScheduleStatus.DONE.value
            key = f"{_OWNER}{sid}:{record.incarnation}:{fire_at}"
            if fire_at is None:
                changes["skipped"] = record.skipped + 1
            elif (
                record.overlap == "skip"
                and self._previous_active(record)
                # A fire re-handled after a crash records the run it started, overlap or not.
                and self.store.find_idempotent(record.workflow, key) is None
            ):
                changes["skipped"] = record.skipped + 1
            else:
                changes["last_ms"] = fire_at
                try:
                    eid = await self.host.start(
                        record.workflow,
                        record.input,
                        idempotency_key=key,
                        schedule_id=sid,
                        scheduled_at=fire_at,
                    )
                except (PayloadError, UnknownWorkflowError) as exc:
                    changes["last_error"] = str(exc)
                else:
                    if eid not in record.executions:  # re-fired after a crash: known run
                        executions = (*record.executions, eid)[-MAX_LISTED_EXECUTIONS:]
                        changes["executions"] = executions
                        changes["runs"] = record.runs + 1
                    changes["last_error"] = None
            await self._write(record, attrs.evolve(record, **changes))

    def _previous_active(self, record: _Record) -> bool:
        if not record.executions:
            return False
        previous = self.store.get_execution(record.executions[-1])
        return previous is not None and previous.status in ACTIVE_STATUSES

    # --- storage ---

    def _load(self, sid: str) -> _Record | None:
        data = self.store.get_schedule(sid)
        return None if data is None else _Record.from_data(sid, data)

    def _require(self, sid: Any) -> _Record:
        check_schedule_id(sid)
        record = self._load(sid)
        if record is None:
            raise UnknownScheduleError(sid)
        return record

    async def _write(self, old: _Record | None, new: _Record | None) -> None:
        """Write the record and swap its timer in one transaction, then re-arm."""
        old_timer = old.timer() if old is not None else None
        new_timer = new.timer() if new is not None else None
        ops: list[Op] = []
        if old_timer is not None and old_timer != new_timer:
            ops.append(RemoveTimer(old_timer))
        if new is None:
            assert old is not None
            ops.append(DeleteSchedule(old.id))
        else:
            ops.append(PutSchedule(new.id, new.to_data()))
        if new_timer is not None and new_timer != old_timer:
            ops.append(AddTimer(new_timer))
        own = self.host.parts.ownership
        owner = _OWNER + (new.id if new is not None else old.id if old is not None else "")
        if own is not None and not own.owns(owner):
            ops.append(Notify(owner, INBOX_SIGNAL))  # the owner arms its fires
        await self.host.parts.committer.commit(ops)
        if old_timer is not None and old_timer != new_timer:
            self.host.parts.scheduler.disarm(old_timer)
        if new_timer is not None:
            self.host.parts.scheduler.arm(new_timer)

    # --- the API ---

    def _definition(
        self, workflow: WorkflowDefinition[Any, Any] | str, input: Any
    ) -> tuple[str, Any]:
        definition = self.host.parts.registry.resolve(workflow)
        shaped = _codec.check(
            input, definition.input_type, f"input of workflow {definition.name!r}"
        )
        return definition.name, shaped

    def _new_record(
        self,
        sid: str,
        workflow: str,
        shaped: Any,
        cadencing: Cadencing | None,
        at_ms: int | None,
        catch_up: str,
        overlap: str,
        now: int,
    ) -> _Record:
        return _Record(
            id=sid,
            workflow=workflow,
            input=shaped,
            status=ScheduleStatus.ACTIVE.value,
            cron=cadencing.cron if cadencing else None,
            timezone=cadencing.timezone if cadencing else None,
            interval_ms=cadencing.interval_ms if cadencing else None,
            at_ms=at_ms,
            anchor_ms=cadencing.first_ms if cadencing and cadencing.interval_ms else None,
            catch_up=catch_up,
            overlap=overlap,
            next_ms=cadencing.first_ms if cadencing else at_ms,
            last_ms=None,
            created_ms=now,
            updated_ms=now,
            incarnation=secrets.token_hex(4),
        )

    async def schedule(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        at: datetime | None,
        delay: float | timedelta | None,
        catch_up: str,
        id: str | None,
    ) -> str:
        name, shaped = self._definition(workflow, input)
        check_policies(catch_up, "allow")
        now = self.clock.now_ms()
        if (at is None) == (delay is None):
            raise ConfigurationError("engine.schedule takes at= or delay=, exactly one")
        if at is not None:
            if not isinstance(at, datetime):
                raise ConfigurationError(f"at= must be a datetime; got {at!r}")
            if at.tzinfo is None or at.utcoffset() is None:
                raise ConfigurationError(
                    f"at= must be an aware datetime (e.g. tzinfo=UTC); got naive {at!r}"
                )
            at_ms = epoch_ms(at)
        else:
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
            if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                raise ConfigurationError(f"delay= must be seconds; got {delay!r}")
            if not math.isfinite(seconds) or seconds < 0:
                raise ConfigurationError(f"delay= must be zero or more seconds; got {delay!r}")
            at_ms = now + round(seconds * 1000)
        if id is None:
            id = f"once-{now:012x}{secrets.token_hex(6)}"
        sid = check_schedule_id(id)
        async with self._lock:
            if self._load(sid) is not None:
                raise ConfigurationError(
                    f"a schedule {sid!r} exists already; remove it or choose another id"
                )
            record = self._new_record(sid, name, shaped, None, at_ms, catch_up, "allow", now)
            await self._write(None, record)
        return sid

    async def ensure(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        id: str,
        cron: str | None,
        interval: float | timedelta | None,
        timezone: str | None,
        catch_up: str,
        overlap: str,
    ) -> str:
        sid = check_schedule_id(id)
        name = self.host.parts.registry.resolve(workflow).name
        self._check_same_workflow(self._load(sid), name)
        name, shaped = self._definition(workflow, input)
        check_policies(catch_up, overlap)
        now = self.clock.now_ms()
        cadencing = recurring(cron, interval, timezone, now)
        assert cadencing is not None
        async with self._lock:
            old = self._load(sid)
            new = self._new_record(sid, name, shaped, cadencing, None, catch_up, overlap, now)
            if old is None:
                await self._write(None, new)
                return sid
            self._check_same_workflow(old, name)
            if old.definition() == new.definition():
                self._arm(old)  # (its fires may be this worker's now: a worker of many)
                return sid
            await self._write(old, self._updated(old, new, now))
        return sid

    @staticmethod
    def _check_same_workflow(old: _Record | None, name: str) -> None:
        if old is not None and old.workflow != name:
            raise ConfigurationError(
                f"schedule {old.id!r} starts workflow {old.workflow!r}, not {name!r}; "
                "remove it first (engine.remove_schedule) or use another id"
            )

    def _updated(self, old: _Record, new: _Record, now: int) -> _Record:
        """``old`` with the definition of ``new``; a new cadence fires anew from now."""
        same_cadence = (old.cron, old.timezone, old.interval_ms, old.at_ms) == (
            new.cron,
            new.timezone,
            new.interval_ms,
            new.at_ms,
        )
        changes: dict[str, Any] = {
            "input": new.input,
            "catch_up": new.catch_up,
            "overlap": new.overlap,
            "updated_ms": now,
        }
        if not same_cadence:
            changes.update(
                cron=new.cron,
                timezone=new.timezone,
                interval_ms=new.interval_ms,
                at_ms=new.at_ms,
                anchor_ms=new.anchor_ms,
            )
            if old.status == ScheduleStatus.ACTIVE:
                changes["next_ms"] = new.next_ms
            elif old.status == ScheduleStatus.DONE:
                changes["status"] = ScheduleStatus.ACTIVE.value
                changes["next_ms"] = new.next_ms
        return attrs.evolve(old, **changes)

    async def update(
        self,
        sid: str,
        *,
        cron: str | None,
        interval: float | timedelta | None,
        timezone: str | None,
        input: Any,
        has_input: bool,
        catch_up: str | None,
        overlap: str | None,
    ) -> Schedule:
        check_schedule_id(sid)
        async with self._lock:
            old = self._require(sid)
            now = self.clock.now_ms()
            if old.at_ms is not None and (cron is not None or interval is not None):
                raise ConfigurationError(
                    f"schedule {sid!r} is a one-off; remove it and use ensure_schedule for a "
                    "recurring one"
                )
            if timezone is not None and cron is None:
                if old.cron is None:
                    raise ConfigurationError(
                        "timezone= applies to cron schedules; this one runs on an interval"
                    )
                cron = old.cron
            if cron is not None and timezone is None:
                timezone = old.timezone  # a new expression keeps the schedule's timezone
            cadencing = recurring(cron, interval, timezone, now, required=False)
            if has_input:
                definition = self.host.parts.registry.resolve(old.workflow)
                shaped = _codec.check(
                    input, definition.input_type, f"input of workflow {old.workflow!r}"
                )
            else:
                shaped = old.input
            new_catch_up = catch_up if catch_up is not None else old.catch_up
            new_overlap = overlap if overlap is not None else old.overlap
            check_policies(new_catch_up, new_overlap)
            if cadencing is None:
                new = attrs.evolve(old, input=shaped, catch_up=new_catch_up, overlap=new_overlap)
            else:
                new = self._new_record(
                    sid, old.workflow, shaped, cadencing, None, new_catch_up, new_overlap, now
                )
            if new.definition() == old.definition():
                return old.view()
            updated = self._updated(old, new, now)
            await self._write(old, updated)
            return updated.view()

    async def pause(self, sid: str) -> None:
        async with self._lock:
            old = self._require(sid)
            if old.status == ScheduleStatus.PAUSED:
                return
            if old.status == ScheduleStatus.DONE:
                raise ConfigurationError(f"schedule {sid!r} is done; there is nothing to pause")
            now = self.clock.now_ms()
            new = attrs.evolve(
                old, status=ScheduleStatus.PAUSED.value, next_ms=None, updated_ms=now
            )
            await self._write(old, new)

    async def resume(self, sid: str) -> None:
        async with self._lock:
            old = self._require(sid)
            if old.status == ScheduleStatus.ACTIVE:
                return
            if old.status == ScheduleStatus.DONE:
                raise ConfigurationError(f"schedule {sid!r} is done; there is nothing to resume")
            now = self.clock.now_ms()
            changes: dict[str, Any] = {"status": ScheduleStatus.ACTIVE.value, "updated_ms": now}
            if old.interval_ms is not None:
                # The beat restarts from now: the first fire is one interval away.
                changes["anchor_ms"] = now + old.interval_ms
                changes["next_ms"] = now + old.interval_ms
            elif old.cron is not None:
                changes["next_ms"] = old.cadence().next_after(now)
            else:
                # A paused one-off whose time has passed fires now.
                assert old.at_ms is not None
                changes["next_ms"] = max(old.at_ms, now)
            if changes["next_ms"] is None:
                changes["status"] = ScheduleStatus.DONE.value
            await self._write(old, attrs.evolve(old, **changes))

    async def remove(self, sid: str) -> None:
        async with self._lock:
            old = self._require(sid)
            await self._write(old, None)

    def get(self, sid: str) -> Schedule:
        return self._require(sid).view()

    def list(self) -> Sequence[Schedule]:
        return [_Record.from_data(sid, data).view() for sid, data in self.store.list_schedules()]
