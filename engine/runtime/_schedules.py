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

import enum
import logging
import math
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import trio
from croniter import CroniterError, croniter  # type: ignore[import-untyped, unused-ignore]

from durably.stores import (
    ACTIVE_STATUSES,
    AddTimer,
    DeleteSchedule,
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
    UnknownWorkflowError,
)
from ..core._types import from_ms

if TYPE_CHECKING:
    from .._engine import Engine
    from ..core._workflow import WorkflowDefinition

log = logging.getLogger("durably")

CatchUp = Literal["latest", "all", "skip"]
"""What a recurring schedule does about fires missed while no engine ran."""
Overlap = Literal["allow", "skip"]
"""What a fire does while the schedule's previous execution is still active."""

#: How many of the most recent execution ids a schedule record keeps.
MAX_LISTED_EXECUTIONS = 100
_OWNER = "schedule:"
_TIMER_ID = "next"
_MAX_ID = 200
_FORMAT = 1
_CATCH_UP = ("latest", "all", "skip")
_OVERLAP = ("allow", "skip")
#: Wider than any DST shift: how far around a reference time cron candidates are looked at.
_DST_WINDOW = timedelta(hours=4)
_MAX_CANDIDATES = 100_000


class UnknownScheduleError(DurablyError, LookupError):
    """A schedule id that the store does not hold."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(
            f"no schedule {schedule_id!r} in this store; check the id "
            "(engine.schedule and engine.ensure_schedule return it; "
            "an execution id is not a schedule id)"
        )


class ScheduleStatus(enum.StrEnum):
    """Where a schedule is."""

    ACTIVE = "active"
    """It will fire at ``next_fire_at``."""
    PAUSED = "paused"
    """Kept, but not firing until resumed."""
    DONE = "done"
    """A one-off schedule that has fired (or a cron expression with no future match)."""


@attrs.frozen
class Schedule:
    """A read-only view of a schedule: its definition, its state, and what it started."""

    id: str
    workflow: str
    input: Any
    status: ScheduleStatus
    cron: str | None
    """The cron expression, for a cron schedule."""
    timezone: str | None
    """The IANA timezone the cron expression is read in, for a cron schedule."""
    interval: float | None
    """Seconds between fires, for an interval schedule."""
    at: datetime | None
    """The fire time of a one-off schedule."""
    catch_up: CatchUp
    overlap: Overlap
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime
    executions: tuple[str, ...]
    """Ids of the executions it started, oldest first (the most recent 100)."""
    runs: int
    """Executions started in all (``executions`` keeps only the most recent)."""
    skipped: int
    """Fires not run: by ``overlap="skip"``, or missed during downtime with ``catch_up="skip"``."""
    last_error: str | None
    """Why the last fire could not start an execution, if it could not."""

    @property
    def kind(self) -> Literal["once", "cron", "interval"]:
        if self.cron is not None:
            return "cron"
        if self.interval is not None:
            return "interval"
        return "once"


# --- the stored record --------------------------------------------------------------------


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

    def cadence(self) -> _Cadence:
        if self.cron is not None:
            return _Cron(self.cron, _zone(self.timezone or "UTC"))
        if self.interval_ms is not None:
            assert self.anchor_ms is not None
            return _Interval(self.interval_ms, self.anchor_ms)
        assert self.at_ms is not None
        return _Once(self.at_ms)

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


# --- cadences: when a schedule fires --------------------------------------------------------


class _Cadence:
    def next_after(self, ms: int) -> int | None:
        """The first fire strictly after ``ms``; None if there is none."""
        raise NotImplementedError

    def last_at_or_before(self, ms: int) -> int | None:
        """The last fire at or before ``ms``; None if there is none."""
        raise NotImplementedError


@attrs.frozen
class _Once(_Cadence):
    at_ms: int

    def next_after(self, ms: int) -> int | None:
        return self.at_ms if ms < self.at_ms else None

    def last_at_or_before(self, ms: int) -> int | None:
        return self.at_ms if self.at_ms <= ms else None


@attrs.frozen
class _Interval(_Cadence):
    interval_ms: int
    anchor_ms: int

    def next_after(self, ms: int) -> int:
        if ms < self.anchor_ms:
            return self.anchor_ms
        return self.anchor_ms + ((ms - self.anchor_ms) // self.interval_ms + 1) * self.interval_ms

    def last_at_or_before(self, ms: int) -> int | None:
        if ms < self.anchor_ms:
            return None
        return self.anchor_ms + ((ms - self.anchor_ms) // self.interval_ms) * self.interval_ms


class _Cron(_Cadence):
    """Cron fires in a timezone, DST-correct (rules in the module docstring).

    croniter walks naive wall-clock times; each match is then placed on the timeline by
    ``_instants``. Matches map to instants monotonically except around a DST change, so
    near one the candidates are collected over a window wider than any shift and the
    nearest wins; elsewhere the first match is the answer.
    """

    def __init__(self, expr: str, zone: ZoneInfo) -> None:
        self.expr = expr
        self.zone = zone
        hours = croniter(expr, datetime(2000, 1, 1)).expanded[1]
        self.every_hour = hours == ["*"] or len(set(hours)) == 24

    def next_after(self, ms: int) -> int | None:
        return self._search(ms, forward=True)

    def last_at_or_before(self, ms: int) -> int | None:
        return self._search(ms, forward=False)

    def _search(self, ms: int, *, forward: bool) -> int | None:
        def wanted(t: int) -> bool:
            return t > ms if forward else t <= ms

        local = datetime.fromtimestamp(ms / 1000, self.zone)
        naive = local.replace(tzinfo=None, fold=0)
        try:
            if _plain(naive, self.zone):
                # Fast path: the reference is in no DST overlap, so if the nearest match
                # is a plain wall-clock time, nothing nearer can hide in a shift.
                start = naive if forward else naive + timedelta(milliseconds=1)
                candidate = self._step(croniter(self.expr, start), forward)
                instants, plain = self._instants(candidate)
                if plain and wanted(instants[0]):
                    return instants[0]
            start = naive - _DST_WINDOW if forward else naive + _DST_WINDOW
            it = croniter(self.expr, start)
            best: int | None = None
            for _ in range(_MAX_CANDIDATES):
                candidate = self._step(it, forward)
                instants, plain = self._instants(candidate)
                for t in instants:
                    if wanted(t) and (best is None or (t < best if forward else t > best)):
                        best = t
                if plain and wanted(instants[0]):
                    return best
        except CroniterError:
            return None  # no match in croniter's search range: the schedule never fires
        return best

    @staticmethod
    def _step(it: Any, forward: bool) -> datetime:
        result: datetime = it.get_next(datetime) if forward else it.get_prev(datetime)
        return result

    def _instants(self, naive: datetime) -> tuple[list[int], bool]:
        """Where a wall-clock match lands on the timeline, and whether it is plain."""
        first = naive.replace(tzinfo=self.zone, fold=0)
        second = naive.replace(tzinfo=self.zone, fold=1)
        t0, t1 = _ms(first), _ms(second)
        if t0 == t1:
            return [t0], True
        if first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != naive:
            # In the gap of a spring-forward night: fire when the clocks jump.
            return [_transition(min(t0, t1), max(t0, t1), self.zone)], False
        # Twice on a fall-back night: the first pass, both passes for every-hour crons.
        return ([t0, t1] if self.every_hour else [t0]), False


def _plain(naive: datetime, zone: ZoneInfo) -> bool:
    return (
        naive.replace(tzinfo=zone, fold=0).utcoffset()
        == naive.replace(tzinfo=zone, fold=1).utcoffset()
    )


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _transition(lo_ms: int, hi_ms: int, zone: ZoneInfo) -> int:
    """The instant in ``(lo_ms, hi_ms]`` at which the zone's offset changes (to the second)."""
    target = datetime.fromtimestamp(hi_ms / 1000, zone).utcoffset()
    lo, hi = lo_ms // 1000, -(-hi_ms // 1000)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi * 1000


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"unknown timezone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc


# --- validation ----------------------------------------------------------------------------


def _check_schedule_id(value: Any) -> str:
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > _MAX_ID:
        raise ConfigurationError(
            f"a schedule id must be a non-empty string without NUL, at most {_MAX_ID} "
            f"characters; got {value!r}"
        )
    return value


def _check_policies(catch_up: Any, overlap: Any) -> None:
    if catch_up not in _CATCH_UP:
        raise ConfigurationError(f"catch_up must be one of {_CATCH_UP}; got {catch_up!r}")
    if overlap not in _OVERLAP:
        raise ConfigurationError(f"overlap must be one of {_OVERLAP}; got {overlap!r}")


def _interval_ms(interval: Any) -> int:
    if isinstance(interval, timedelta):
        seconds = interval.total_seconds()
    elif isinstance(interval, int | float) and not isinstance(interval, bool):
        seconds = float(interval)
    else:
        raise ConfigurationError(
            f"interval must be seconds (a number) or a timedelta; got {interval!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"interval must be a positive number of seconds; got {interval!r}")
    ms = round(seconds * 1000)
    if ms < 1:
        raise ConfigurationError(f"interval must be at least a millisecond; got {interval!r}")
    return ms


def _check_cron(expr: Any, timezone: str | None, now_ms: int) -> tuple[_Cron, int]:
    """The cadence and its first fire after ``now_ms``; an error if it has none."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigurationError(f"cron must be a cron expression string; got {expr!r}")
    zone = _zone(timezone if timezone is not None else "UTC")
    try:
        cadence = _Cron(expr, zone)
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise ConfigurationError(
            f"invalid cron expression {expr!r} ({exc}); the form is "
            "'minute hour day-of-month month day-of-week', e.g. '0 3 * * *'"
        ) from exc
    first = cadence.next_after(now_ms)
    if first is None:
        # Valid syntax can still never match (e.g. '0 0 30 2 *': February 30th).
        raise ConfigurationError(f"cron expression {expr!r} never fires; check its day fields")
    return cadence, first


@attrs.frozen
class _Cadencing:
    """A validated cadence, as it goes into a record."""

    cron: str | None
    timezone: str | None
    interval_ms: int | None
    first_ms: int


def _recurring(
    cron: Any, interval: Any, timezone: Any, now_ms: int, *, required: bool = True
) -> _Cadencing | None:
    if cron is not None and interval is not None:
        raise ConfigurationError("pass cron= or interval=, not both")
    if timezone is not None and not isinstance(timezone, str):
        raise ConfigurationError(f"timezone must be an IANA name (a string); got {timezone!r}")
    if cron is not None:
        tz = timezone if timezone is not None else "UTC"
        _, first = _check_cron(cron, tz, now_ms)
        return _Cadencing(cron, tz, None, first)
    if timezone is not None and required:
        raise ConfigurationError("timezone= applies to cron schedules; interval= is in seconds")
    if interval is not None:
        ms = _interval_ms(interval)
        return _Cadencing(None, None, ms, now_ms + ms)
    if required:
        raise ConfigurationError("a recurring schedule needs cron= or interval=")
    return None


# --- the manager ---------------------------------------------------------------------------


class ScheduleManager:
    """Owns every schedule of one engine: the API's writes and the fires.

    One lock serialises all read-modify-write of schedule records (API calls and fires), so
    a fire never records over an update, and an update never resurrects a removed schedule.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.clock = engine.clock
        #: Fires due before this (ms) were missed while no engine ran: catch-up applies.
        self.started_ms = engine.clock.now_ms()
        self._lock = trio.Lock()
        self._due_send, self._due_recv = trio.open_memory_channel[Timer](math.inf)

    # --- the actor ---

    def due(self, timer: Timer) -> None:
        """The scheduler actor's callback for a schedule's timer."""
        self._due_send.send_nowait(timer)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for timer in self._due_recv:
            try:
                await self._fire(timer.owner[len(_OWNER) :], timer.due_ms)
            except DurablyError as exc:
                if self.engine._closing:
                    return  # shutting down mid-fire: the next engine fires it again
                # The timer stays in the index: the fire is retried by the next engine.
                log.error("schedule %s: fire at %s failed: %s", timer.owner, timer.due_ms, exc)

    async def _fire(self, sid: str, due: int) -> None:
        async with self._lock:
            record = self._load(sid)
            if record is None or record.status != ScheduleStatus.ACTIVE or record.next_ms != due:
                return  # a timer left in the heap by an update, pause or removal
            if record.workflow not in self.engine._definitions:
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
                    eid = await self.engine.start(
                        record.workflow, record.input, idempotency_key=key, _schedule_id=sid
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
        _check_schedule_id(sid)
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
        await self.engine.committer.commit(ops)
        if old_timer is not None and old_timer != new_timer:
            self.engine.scheduler.disarm(old_timer)
        if new_timer is not None:
            self.engine.scheduler.arm(new_timer)

    # --- the API ---

    def _definition(
        self, workflow: WorkflowDefinition[Any, Any] | str, input: Any
    ) -> tuple[str, Any]:
        definition = self.engine._resolve(workflow)
        shaped = _codec.check(
            input, definition.input_type, f"input of workflow {definition.name!r}"
        )
        return definition.name, shaped

    def _new_record(
        self,
        sid: str,
        workflow: str,
        shaped: Any,
        cadencing: _Cadencing | None,
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
        _check_policies(catch_up, "allow")
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
            at_ms = _ms(at)
        else:
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
            if not isinstance(seconds, int | float) or isinstance(seconds, bool):
                raise ConfigurationError(f"delay= must be seconds; got {delay!r}")
            if not math.isfinite(seconds) or seconds < 0:
                raise ConfigurationError(f"delay= must be zero or more seconds; got {delay!r}")
            at_ms = now + round(seconds * 1000)
        if id is None:
            id = f"once-{now:012x}{secrets.token_hex(6)}"
        sid = _check_schedule_id(id)
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
        sid = _check_schedule_id(id)
        name = self.engine._resolve(workflow).name
        self._check_same_workflow(self._load(sid), name)
        name, shaped = self._definition(workflow, input)
        _check_policies(catch_up, overlap)
        now = self.clock.now_ms()
        cadencing = _recurring(cron, interval, timezone, now)
        assert cadencing is not None
        async with self._lock:
            old = self._load(sid)
            new = self._new_record(sid, name, shaped, cadencing, None, catch_up, overlap, now)
            if old is None:
                await self._write(None, new)
                return sid
            self._check_same_workflow(old, name)
            if old.definition() == new.definition():
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
        _check_schedule_id(sid)
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
            cadencing = _recurring(cron, interval, timezone, now, required=False)
            if has_input:
                definition = self.engine._resolve(old.workflow)
                shaped = _codec.check(
                    input, definition.input_type, f"input of workflow {old.workflow!r}"
                )
            else:
                shaped = old.input
            new_catch_up = catch_up if catch_up is not None else old.catch_up
            new_overlap = overlap if overlap is not None else old.overlap
            _check_policies(new_catch_up, new_overlap)
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
