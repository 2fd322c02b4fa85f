"""The events of an execution's log.

Rules of this module:

- Events are frozen attrs classes named in the past tense. Each has a ``tag``: the stable
  name stored in the log. Renaming a class never breaks an old log; changing a tag does,
  and the golden-log tests in ``tests/golden/`` catch that.
- Values inside events are JSON-shaped builtins already (see ``_codec.shape``), so that
  reading a log never needs the user's types; the context restores types when it answers.
- Every event carries ``at``: wall-clock epoch milliseconds from the engine's clock when
  it was recorded. The audit trail is read from these events, so it cannot drift from
  what happened.
- ``command`` names the workflow command kind an event answers (``step``, ``sleep``, ...)
  for events that carry a ``step_id``; the replay core checks it against the code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import orjson

from ._codec import explain
from ._errors import CorruptRecordError, PayloadError


@attrs.frozen
class Event:
    tag: ClassVar[str] = ""
    command: ClassVar[str | None] = None
    at: int


@attrs.frozen
class ExecutionStarted(Event):
    tag = "started"
    workflow: str
    input: Any
    attempt: int = 1
    #: 1 for an execution's first run; ``n + 1`` for the run a ``continue_as_new`` of
    #: run ``n`` began (its log starts over, the execution id stays).
    run: int = 1
    #: The fire time (epoch ms) a schedule started this run for (``ctx.scheduled_at``).
    scheduled_at: int | None = None


@attrs.frozen
class ExecutionResumed(Event):
    """The operator retried the execution: it runs again from its log (``attempt`` + 1)."""

    tag = "resumed"
    attempt: int
    by: str | None = None
    reason: str | None = None


@attrs.frozen
class StepCompleted(Event):
    tag = "step.completed"
    command = "step"
    step_id: str
    result: Any
    duration_ms: float = 0.0
    attempt: int = 1


@attrs.frozen
class StepFailed(Event):
    """The step failed for good: the workflow sees a ``StepError``."""

    tag = "step.failed"
    command = "step"
    step_id: str
    error: dict[str, Any]
    duration_ms: float = 0.0
    attempt: int = 1


@attrs.frozen
class StepRetrying(Event):
    """An attempt failed and the retry policy allows another at ``retry_at``."""

    tag = "step.retrying"
    command = "step"
    step_id: str
    error: dict[str, Any]
    attempt: int
    retry_at: int
    duration_ms: float = 0.0


@attrs.frozen
class StepSkipped(Event):
    """An operator supplied the step's result instead of running it."""

    tag = "step.skipped"
    command = "step"
    step_id: str
    result: Any
    by: str | None = None
    reason: str | None = None


@attrs.frozen
class TimerStarted(Event):
    tag = "timer.started"
    command = "sleep"
    step_id: str
    wake_at: int


@attrs.frozen
class TimerFired(Event):
    tag = "timer.fired"
    command = "sleep"
    step_id: str


@attrs.frozen
class SignalWaiting(Event):
    tag = "signal.waiting"
    command = "signal"
    step_id: str
    signal: str
    deadline: int | None = None


@attrs.frozen
class SignalReceived(Event):
    tag = "signal.received"
    command = "signal"
    step_id: str
    signal: str
    payload: Any
    mailbox_seq: int
    #: Who sent it and why, when the sender said (an operator, from the dashboard or CLI).
    by: str | None = None
    reason: str | None = None


@attrs.frozen
class SignalTimedOut(Event):
    tag = "signal.timed_out"
    command = "signal"
    step_id: str
    signal: str


@attrs.frozen
class SignalRejected(Event):
    """A signal whose payload does not fit the wait's type: consumed like a received one,
    so that it is not taken again, and raised by the wait as ``SignalPayloadError``, on
    every replay alike. ``expected`` names the type, ``error`` says why."""

    tag = "signal.rejected"
    command = "signal"
    step_id: str
    signal: str
    payload: Any
    mailbox_seq: int
    expected: str
    error: dict[str, Any]
    by: str | None = None
    reason: str | None = None


@attrs.frozen
class ValueRecorded(Event):
    """A deterministic value (``now``, ``random``, ``uuid``) recorded on first use."""

    tag = "value"
    command = "value"
    step_id: str
    kind: str
    value: Any


@attrs.frozen
class Emitted(Event):
    tag = "emitted"
    command = "emit"
    step_id: str
    event: str
    payload: Any


@attrs.frozen
class Noted(Event):
    tag = "noted"
    command = "note"
    step_id: str
    message: str
    meta: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class SwitchEvaluated(Event):
    tag = "switch"
    command = "switch"
    step_id: str
    branch_id: str
    result: Any
    duration_ms: float = 0.0


@attrs.frozen
class CompensationCompleted(Event):
    tag = "compensation.completed"
    command = "compensate"
    step_id: str  # "rollback:<step id>"
    duration_ms: float = 0.0


@attrs.frozen
class CompensationFailed(Event):
    tag = "compensation.failed"
    command = "compensate"
    step_id: str
    error: dict[str, Any]
    #: How many operator ``retry_rollback`` actions preceded this failure.
    round: int = 0


@attrs.frozen
class ChildStarted(Event):
    """A child execution was created, in the same transaction as this event."""

    tag = "child.started"
    command = "child"
    step_id: str
    child_id: str
    workflow: str
    #: A detached child outlives its parent; others are cancelled when the parent ends.
    detached: bool = False


@attrs.frozen
class ChildWaiting(Event):
    """The parent waits for its child's end (parked like a signal wait)."""

    tag = "child.waiting"
    command = "child"
    step_id: str
    child_id: str


@attrs.frozen
class ChildEnded(Event):
    """The parent took its child's outcome (``status`` is the child's final status)."""

    tag = "child.ended"
    command = "child"
    step_id: str
    child_id: str
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    mailbox_seq: int = -1


@attrs.frozen
class GatherStarted(Event):
    """A ``ctx.gather`` began: the step ids first recorded until its ``GatherEnded``
    (or the log's end) are its members, matched by id in any order."""

    tag = "gather.started"
    command = "gather"
    step_id: str
    size: int


@attrs.frozen
class GatherEnded(Event):
    """The gather returned, or raised the error of member ``error_step``."""

    tag = "gather.ended"
    command = "gather"
    step_id: str
    error_step: str | None = None


@attrs.frozen
class PatchMarked(Event):
    """The run reached ``ctx.patched(patch)`` (or ``deprecate_patch``) as new code."""

    tag = "patch"
    command = "patch"
    step_id: str
    patch: str


@attrs.frozen
class Published(Event):
    """``ctx.publish(key, value)``: a value the outside may read while the run goes on."""

    tag = "published"
    command = "publish"
    step_id: str
    key: str
    value: Any


@attrs.frozen
class Enqueued(Event):
    """``ctx.enqueue``: an execution was queued, in the same transaction as this event;
    or, with ``duplicate_of``, the queue refused it for its dedup id (nothing queued)."""

    tag = "enqueued"
    command = "enqueue"
    step_id: str
    execution_id: str
    queue: str
    duplicate_of: str | None = None


@attrs.frozen
class ExecutionCompleted(Event):
    tag = "completed"
    result: Any


@attrs.frozen
class ExecutionFailed(Event):
    tag = "failed"
    error: dict[str, Any]
    status: str = "failed"


@attrs.frozen
class ExecutionCancelled(Event):
    tag = "cancelled"
    reason: str | None = None
    by: str | None = None


@attrs.frozen
class OperatorActed(Event):
    """An operator's action, with who and why: no edit of an execution is silent."""

    tag = "operator"
    action: str
    by: str | None = None
    reason: str | None = None
    data: Any = None


_CLASSES: dict[str, type[Event]] = {}
_FIELDS: dict[type[Event], tuple[str, ...]] = {}
#: A tag's stored keys (its class's fields and ``"t"``), and its class's ``command``.
_KEYS: dict[str, frozenset[str]] = {}
COMMANDS: dict[str, str | None] = {}

#: An event as its log stores it: the decoded JSON object, with the tag under ``"t"`` and
#: every field of the tag's class (``load_all``). A replay keeps these and builds an
#: ``Event`` (``event_of``) only where one is asked for: a replayed step reads its
#: recorded result and nothing else, and building a frozen attrs instance per event cost
#: twice as much as decoding it (measured: 0.8 us against 0.35).
Fields = dict[str, Any]


def _register() -> None:
    for cls in (
        ExecutionStarted,
        ExecutionResumed,
        StepCompleted,
        StepFailed,
        StepRetrying,
        StepSkipped,
        TimerStarted,
        TimerFired,
        SignalWaiting,
        SignalReceived,
        SignalTimedOut,
        SignalRejected,
        ValueRecorded,
        Emitted,
        Noted,
        SwitchEvaluated,
        CompensationCompleted,
        CompensationFailed,
        ChildStarted,
        ChildWaiting,
        ChildEnded,
        GatherStarted,
        GatherEnded,
        PatchMarked,
        Published,
        Enqueued,
        ExecutionCompleted,
        ExecutionFailed,
        ExecutionCancelled,
        OperatorActed,
    ):
        assert cls.tag and cls.tag not in _CLASSES, cls
        _CLASSES[cls.tag] = cls
        _FIELDS[cls] = tuple(a.name for a in attrs.fields(cls))
        _KEYS[cls.tag] = frozenset((*_FIELDS[cls], "t"))
        COMMANDS[cls.tag] = cls.command


_register()


def encode(event: Event) -> bytes:
    """The stored bytes of ``event``; :class:`PayloadError` (a ``TypeError``) if it cannot
    be stored.

    The fast paths of ``_codec.shape`` and ``roundtrip`` hand a ``str`` or ``int`` on as
    it is, so this encoding is where an integer past 64 bits or a string that is not valid
    UTF-8 is caught: by orjson, at no cost to the values that fit.
    """
    data = fields_of(event)
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        step_id = data.get("step_id")
        what = f"step {step_id!r}" if isinstance(step_id, str) else f"the {event.tag} event"
        raise PayloadError(f"{what}: {explain(exc)}") from None


def fields_of(event: Event) -> Fields:
    """What ``event`` is stored as, before its encoding."""
    data = {name: getattr(event, name) for name in _FIELDS[type(event)]}
    data["t"] = event.tag
    return data


def event_of(data: Fields) -> Event:
    """The event of fields that ``load_all`` checked (or ``fields_of`` made)."""
    fields = dict(data)
    return _CLASSES[fields.pop("t")](**fields)


def decode(raw: bytes, execution_id: str | None = None) -> Event:
    try:
        data = orjson.loads(raw)
        cls = _CLASSES[data.pop("t")]
        return cls(**data)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise _unreadable(exc, execution_id) from None


def decode_all(raws: list[bytes], execution_id: str | None = None) -> list[Event]:
    return [decode(raw, execution_id) for raw in raws]


def load_all(raws: list[bytes], execution_id: str | None = None) -> list[Fields]:
    """The fields of each stored event, checked as ``decode`` checks them: a known tag,
    and the fields its class takes (``CorruptRecordError`` otherwise).

    One loop, no call per event: this is a replay's decode. An event that lacks a field
    with a default (written before the field existed) is completed through its class.
    """
    out: list[Fields] = []
    append = out.append
    loads = orjson.loads
    keys = _KEYS
    try:
        for raw in raws:
            data = loads(raw)
            if keys[data["t"]] != data.keys():  # the tag first: TypeError if no object
                data = fields_of(event_of(data))
            append(data)
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise _unreadable(exc, execution_id) from None
    return out


def _unreadable(exc: Exception, execution_id: str | None) -> CorruptRecordError:
    return CorruptRecordError(
        f"an event of execution {execution_id} cannot be read ({exc!r}); it was written "
        "by a newer durably or is damaged",
        execution_id=execution_id,
    )
