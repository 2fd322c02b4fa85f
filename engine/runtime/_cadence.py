"""Cadence maths of schedules: when a once, interval or cron schedule fires next.

Cron expressions are matched against the wall clock of the schedule's timezone by
croniter; around DST changes (see ``docs/scheduling.md``) a wall-clock time that does not
exist that night fires once, at the instant the clocks jump, and one that occurs twice
fires once, at its first occurrence, unless the expression's hour field is ``*``.

This is the one part of the schedule logic that stays out of ``durably.core``: the core
imports no croniter. It is pure all the same (no clock, no trio, no store).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterError, croniter  # type: ignore[import-untyped, unused-ignore]

from ..core._errors import ConfigurationError

_MAX_ID = 200
_CATCH_UP = ("latest", "all", "skip")
_OVERLAP = ("allow", "skip")
#: A DST transition moves the wall clock by at most this much.
_DST_WINDOW = timedelta(hours=4)
_MAX_CANDIDATES = 100_000


class Cadence:
    def next_after(self, ms: int) -> int | None:
        """The first fire strictly after ``ms``; None if there is none."""
        raise NotImplementedError

    def last_at_or_before(self, ms: int) -> int | None:
        """The last fire at or before ``ms``; None if there is none."""
        raise NotImplementedError


@attrs.frozen
class Once(Cadence):
    at_ms: int

    def next_after(self, ms: int) -> int | None:
        return self.at_ms if ms < self.at_ms else None

    def last_at_or_before(self, ms: int) -> int | None:
        return self.at_ms if self.at_ms <= ms else None


@attrs.frozen
class Interval(Cadence):
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


class Cron(Cadence):
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
        t0, t1 = epoch_ms(first), epoch_ms(second)
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


def epoch_ms(moment: datetime) -> int:
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


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"unknown timezone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc


# --- validation ----------------------------------------------------------------------------


def check_schedule_id(value: Any) -> str:
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > _MAX_ID:
        raise ConfigurationError(
            f"a schedule id must be a non-empty string without NUL, at most {_MAX_ID} "
            f"characters; got {value!r}"
        )
    return value


def check_policies(catch_up: Any, overlap: Any) -> None:
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


def _check_cron(expr: Any, timezone: str | None, now_ms: int) -> tuple[Cron, int]:
    """The cadence and its first fire after ``now_ms``; an error if it has none."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigurationError(f"cron must be a cron expression string; got {expr!r}")
    tz = zone(timezone if timezone is not None else "UTC")
    try:
        cadence = Cron(expr, tz)
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
class Cadencing:
    """A validated cadence, as it goes into a record."""

    cron: str | None
    timezone: str | None
    interval_ms: int | None
    first_ms: int


def recurring(
    cron: Any, interval: Any, timezone: Any, now_ms: int, *, required: bool = True
) -> Cadencing | None:
    if cron is not None and interval is not None:
        raise ConfigurationError("pass cron= or interval=, not both")
    if timezone is not None and not isinstance(timezone, str):
        raise ConfigurationError(f"timezone must be an IANA name (a string); got {timezone!r}")
    if cron is not None:
        tz = timezone if timezone is not None else "UTC"
        _, first = _check_cron(cron, tz, now_ms)
        return Cadencing(cron, tz, None, first)
    if timezone is not None and required:
        raise ConfigurationError("timezone= applies to cron schedules; interval= is in seconds")
    if interval is not None:
        ms = _interval_ms(interval)
        return Cadencing(None, None, ms, now_ms + ms)
    if required:
        raise ConfigurationError("a recurring schedule needs cron= or interval=")
    return None


# --- the manager ---------------------------------------------------------------------------
