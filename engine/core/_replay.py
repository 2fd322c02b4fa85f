"""The replay core: pure, no trio, no store, no clock (in the spirit of h11).

Rules of this module:

- A workflow's durable commands (step, sleep, wait_for_signal, ...) each carry a step id.
  The log groups events by step id; the order in which step ids first appear in the log
  is the *recorded command order*.
- On a run, the workflow must issue commands in the recorded order. A command is answered
  from the log while the log has it; once the log is exhausted, commands are new work.
- Divergence is never guessed around: a command that names a different step id or kind
  than the log holds at that position, a step id the log holds later (reordered), a new
  command while recorded ones remain unreached (renamed or removed), or a workflow that
  finishes before reaching every recorded command raises ``NonDeterminismError`` naming
  the position, the step id, what was recorded and what the code asked for.
- The same step id twice in one run raises ``DuplicateStepError`` at that call.
- A gather (``ctx.gather``) is one command whose members run concurrently, so their
  first appearance in the log is in finishing order, not code order. Its members are the
  step ids first recorded between its ``GatherStarted`` and its ``GatherEnded`` (or the
  log's end, if it was cut short): inside the gather they are matched by id, in any
  order; the gather as a whole keeps its place in the recorded order.
- A recorded patch marker (``ctx.patched``) the code no longer asks for is passed over:
  removing a deprecated patch never breaks a replay.

``Replayer`` is the whole state machine. The engine feeds it the decoded log, asks it for
each command (``issue``) and tells it what it records (``record``). The log may come as
``Fields`` (``_events.load_all``): an entry becomes an ``Event`` when first asked for as
one, and a replayed step (``issue_last``) never asks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from ._errors import DuplicateStepError, NonDeterminismError
from ._events import (
    COMMANDS,
    Event,
    Fields,
    GatherEnded,
    SignalWaiting,
    event_of,
    fields_of,
)

#: A step id's recorded events: the one entry itself (most steps have one), a list from
#: the second on. An entry is an ``Event``, or the ``Fields`` of one read from the log.
_Bucket = Event | Fields | list[Event | Fields]


class NotInGather(Exception):
    """A member the replayed gather never started: it was cut short by another member's
    failure (its ``GatherEnded`` names that member), so this one is not run now either."""


class _Group:
    """The members of the gather being replayed that the code has not issued yet."""

    __slots__ = ("closed", "failed", "remaining", "step_id")

    def __init__(self, step_id: str, remaining: set[str], closed: bool, failed: bool) -> None:
        self.step_id = step_id
        self.remaining = remaining
        self.closed = closed
        self.failed = failed


class Replayer:
    """Matches a run's commands against an execution's recorded events."""

    __slots__ = ("_by_step", "_cursor", "_ends", "_execution_id", "_group", "_order", "_seen")

    def __init__(self, events: Sequence[Event | Fields], execution_id: str | None = None) -> None:
        self._execution_id = execution_id
        # One object per recorded event (no list for a step id's only one, no Event for
        # an entry read as fields, which the garbage collector does not even track while
        # its values are scalars): a long history's replay makes the collector walk them.
        by_step: dict[str, _Bucket] = {}
        order: list[str] = []
        self._by_step = by_step
        self._order = order
        #: Where each recorded gather's members end in ``_order``, and its failed member.
        self._ends: dict[str, tuple[int, str | None]] = {}
        ended = GatherEnded.tag
        for event in events:
            if type(event) is dict:
                step_id = event.get("step_id")
                if step_id is None:
                    continue
                if step_id in by_step:
                    self._add(step_id, event)
                else:  # ``_add`` inline: a step id's first event, once per command
                    by_step[step_id] = event
                    order.append(step_id)
                if event["t"] == ended:
                    self._ends[step_id] = (len(order), event["error_step"])
                continue
            step_id = getattr(event, "step_id", None)
            if step_id is not None:
                self._add(step_id, event)
                if type(event) is GatherEnded:
                    self._ends[step_id] = (len(self._order), event.error_step)
        self._cursor = 0
        self._seen: set[str] = set()
        self._group: _Group | None = None

    def _add(self, step_id: str, event: Event | Fields) -> None:
        by_step = self._by_step
        bucket = by_step.get(step_id)
        if bucket is None:
            by_step[step_id] = event
            self._order.append(step_id)
        elif isinstance(bucket, list):
            bucket.append(event)
        else:
            by_step[step_id] = [bucket, event]

    def _events(self, step_id: str) -> list[Event]:
        """``step_id``'s events as ``Event``s, each built once (kept in its bucket)."""
        bucket = self._by_step[step_id]
        if type(bucket) is not list:
            if type(bucket) is dict:
                bucket = self._by_step[step_id] = event_of(bucket)
            return [cast(Event, bucket)]
        for index, entry in enumerate(bucket):
            if type(entry) is dict:
                bucket[index] = event_of(entry)
        return cast("list[Event]", bucket)

    def _command(self, step_id: str) -> str | None:
        """The command ``step_id`` answers, read from its first event."""
        first = self._by_step[step_id]
        if type(first) is list:
            first = first[0]
        return COMMANDS[first["t"]] if type(first) is dict else cast(Event, first).command

    @property
    def replaying(self) -> bool:
        """True while recorded commands remain ahead of the run."""
        group = self._group
        return self._cursor < len(self._order) or (group is not None and bool(group.remaining))

    def issue(self, step_id: str, command: str) -> list[Event] | None:
        """The recorded events for this command, or ``None`` if it is new work."""
        return None if self._take(step_id, command) is None else self._events(step_id)

    def issue_last(self, step_id: str, command: str) -> Fields | None:
        """What ``issue`` answers, as the fields of the last recorded event alone: every
        replayed step asks this, and it builds no ``Event``."""
        position = self._cursor
        order = self._order
        if (
            position < len(order)
            and order[position] == step_id
            and self._group is None
            and step_id not in self._seen
        ):
            # The hot path of a replay, in this one call: the log's next command is this
            # one, with one event read from the log. Anything else changes nothing here
            # and is left to ``_take``.
            bucket = self._by_step[step_id]
            if type(bucket) is dict and COMMANDS[bucket["t"]] == command:
                self._seen.add(step_id)
                self._cursor = position + 1
                return bucket
        last = self._take(step_id, command)
        if type(last) is list:
            last = last[-1]
        return last if last is None or type(last) is dict else fields_of(cast(Event, last))

    def _take(self, step_id: str, command: str) -> _Bucket | None:
        """Issue the command: its bucket if the log answers it, ``None`` if new work."""
        if step_id in self._seen:
            raise DuplicateStepError(
                f"step id {step_id!r} is used twice in execution {self._execution_id}; "
                "every durable call of one execution needs its own step id"
            )
        self._seen.add(step_id)
        if self._group is not None:
            return self._issue_member(self._group, step_id, command)
        position = self._cursor
        order = self._order
        while position < len(order):
            expected = order[position]
            recorded_cmd = self._command(expected)
            if recorded_cmd == "patch" and step_id != expected:
                position += 1  # a patch the code no longer asks about: passed over
                self._cursor = position
                continue
            if step_id != expected:
                if step_id in self._by_step:
                    why = f"the log records {step_id!r} later: commands were reordered"
                else:
                    why = "the code issued a command the log does not have (renamed or added)"
                raise self._diverged(position, step_id, command, expected, recorded_cmd, why)
            if recorded_cmd != command:
                raise self._diverged(
                    position, step_id, command, expected, recorded_cmd, "the kind changed"
                )
            self._cursor = position + 1
            return self._by_step[expected]
        return None

    def events_of(self, step_id: str) -> list[Event]:
        """What the log holds for ``step_id`` (read-only: issues nothing)."""
        return self._events(step_id) if step_id in self._by_step else []

    def patch(self, step_id: str) -> bool | None:
        """Whether the log took patch ``step_id`` here: True (it did), False (it passed
        this point without it: old code), ``None`` (new work: record the marker)."""
        if step_id in self._by_step:
            return self._take(step_id, "patch") is not None
        if self.replaying:
            return False
        self._take(step_id, "patch")
        return None

    # --- gathers ---

    def open_group(self, step_id: str, recorded: bool) -> None:
        """The gather ``step_id`` starts (it was just issued); ``recorded``: from the log."""
        if not recorded:
            self._group = _Group(step_id, set(), False, False)
            return
        end, error_step = self._ends.get(step_id, (len(self._order), None))
        members = set(self._order[self._cursor : end])
        self._group = _Group(step_id, members, step_id in self._ends, error_step is not None)
        self._cursor = end

    def open_waits(self) -> list[SignalWaiting]:
        """The signal waits of the gather just opened that its log leaves open (begun,
        neither taken nor timed out): open now, before their members reach them again."""
        group = self._group
        if group is None:
            return []
        tag = SignalWaiting.tag
        found: list[SignalWaiting] = []
        for step_id in group.remaining:
            bucket = self._by_step[step_id]
            last = bucket[-1] if type(bucket) is list else bucket
            if (last["t"] if type(last) is dict else cast(Event, last).tag) == tag:
                found.append(cast(SignalWaiting, self._events(step_id)[-1]))
        return found

    def close_group(self, failed: bool) -> None:
        """The gather is over; ``failed``: it raised (members may be left unissued)."""
        group = self._group
        assert group is not None
        self._group = None
        if group.remaining and not failed:
            missing = sorted(group.remaining)[0]
            raise self._diverged(
                self._cursor,
                None,
                "the end of the gather",
                missing,
                self._command(missing),
                f"gather {group.step_id!r} recorded this member; the code no longer runs it",
            )

    def _issue_member(self, group: _Group, step_id: str, command: str) -> _Bucket | None:
        if step_id in group.remaining:
            group.remaining.discard(step_id)
            recorded_cmd = self._command(step_id)
            if recorded_cmd != command:
                raise self._diverged(
                    self._cursor, step_id, command, step_id, recorded_cmd, "the kind changed"
                )
            return self._by_step[step_id]
        if step_id in self._by_step:
            raise self._diverged(
                self._cursor,
                step_id,
                command,
                group.step_id,
                "gather",
                f"the log records {step_id!r} outside gather {group.step_id!r}",
            )
        if group.closed:
            if group.failed:
                raise NotInGather(step_id)
            raise self._diverged(
                self._cursor,
                step_id,
                command,
                group.step_id,
                "gather",
                f"gather {group.step_id!r} finished without this member (added)",
            )
        return None

    def record(self, step_id: str, event: Event) -> None:
        """Note an event the run just recorded for ``step_id`` (the current command)."""
        new = step_id not in self._by_step
        self._add(step_id, event)
        if new:
            self._cursor = len(self._order)

    def finish(self) -> None:
        """The workflow returned or raised: every recorded command must have been reached."""
        while self._cursor < len(self._order):
            expected = self._order[self._cursor]
            recorded_cmd = self._command(expected)
            if recorded_cmd == "patch":
                self._cursor += 1  # a patch the code no longer asks about
                continue
            raise self._diverged(
                self._cursor,
                None,
                "finish",
                expected,
                recorded_cmd,
                "the workflow finished before reaching it (removed or skipped)",
            )

    def _diverged(
        self,
        position: int,
        step_id: str | None,
        command: str,
        expected: str,
        recorded_cmd: str | None,
        why: str,
    ) -> NonDeterminismError:
        attempted = f"{command} {step_id!r}" if step_id is not None else command
        recorded = f"{recorded_cmd} {expected!r}"
        return NonDeterminismError(
            f"execution {self._execution_id} diverged from its history at command "
            f"#{position}: the log recorded {recorded}, the code asked for {attempted} "
            f"({why}). The history is untouched: restore the old code, or ship the change "
            "as a new workflow version, then retry the execution.",
            execution_id=self._execution_id,
            step_id=step_id if step_id is not None else expected,
            position=position,
            recorded=recorded,
            attempted=attempted,
        )
