"""The exceptions durably raises.

One base class, :class:`DurablyError`; each subclass says who raises it, and its message
says what to do. Errors that fit a builtin also subclass it (``UnknownExecutionError`` is
a ``LookupError``) so existing ``except`` clauses keep working.
"""

from __future__ import annotations

from typing import Any

#: durably's implementation packages: never part of a recorded type name.
_ROOMS = frozenset(("core", "runtime", "remote"))


def type_name(kind: type[BaseException]) -> str:
    """A stable, public name for an exception type, as the log records it.

    Private module parts and durably's implementation rooms are dropped
    (``durably.core._errors.StepError`` is recorded as ``durably.StepError``) so that
    moving code between private modules changes nothing; builtins are recorded bare
    (``ValueError``).
    """
    module = ".".join(
        p for p in kind.__module__.split(".") if not p.startswith("_") and p not in _ROOMS
    )
    if not module or module == "builtins":
        return kind.__qualname__
    return f"{module}.{kind.__qualname__}"


class DurablyError(Exception):
    """Base class of every error durably raises on purpose."""


class ConfigurationError(DurablyError, ValueError):
    """A call was given arguments that cannot work (raised at the call, nothing written)."""


class UnknownWorkflowError(DurablyError, LookupError):
    """A workflow name that no registered definition has."""

    def __init__(self, name: str, registered: list[str], *, face: str = "engine") -> None:
        self.name = name
        self.registered = registered
        names = ", ".join(sorted(map(str, registered))) or "(none)"
        if face == "client":
            todo = (
                "With no worker running, the client checks this call itself: pass the "
                "definition in Client(..., workflows=[...]), or start the store's worker."
            )
        else:
            todo = (
                "A worker runs only the workflows it registers: pass the definition in "
                "Engine(..., workflows=[...]) or call engine.register(definition)."
            )
        super().__init__(
            f"no workflow named {name!r} is registered with this {face}; registered: "
            f"{names}. {todo}"
        )


class UnknownExecutionError(DurablyError, LookupError):
    """An execution id that the store does not hold."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"no execution {execution_id!r} in this store; check the id "
            "(engine.start returns it; a schedule id is not an execution id)"
        )


class PayloadError(DurablyError, TypeError):
    """A value could not be serialised to, or restored from, the log.

    Raised at the call that produced the value; nothing of it is written.
    """


class NonDeterminismError(DurablyError):
    """The workflow code no longer matches the execution's recorded history.

    The history is left untouched; fix the code (or ship a new workflow version) and retry
    the execution.
    """

    def __init__(
        self,
        message: str,
        *,
        execution_id: str | None = None,
        step_id: str | None = None,
        position: int | None = None,
        recorded: str | None = None,
        attempted: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.step_id = step_id
        self.position = position
        self.recorded = recorded
        self.attempted = attempted
        super().__init__(message)


class DuplicateStepError(DurablyError):
    """One execution used the same step id twice; step ids must be unique per execution."""


class StepError(DurablyError):
    """A step's body raised; this is what the workflow sees, on the first run and on replay.

    The original exception cannot be rebuilt from the log in general, so the first run
    raises this too (with the original as ``__cause__``): code that catches it behaves the
    same on replay. ``error_type`` is the original's qualified type name.
    """

    def __init__(self, step_id: str, error_type: str, message: str) -> None:
        self.step_id = step_id
        self.error_type = error_type
        self.error_message = message
        super().__init__(f"step {step_id!r} failed: {error_type}: {message}")

    def is_a(self, exc_type: type[BaseException]) -> bool:
        """True if the original error's type name is ``exc_type``'s (or its simple name)."""
        return self.error_type in (type_name(exc_type), exc_type.__qualname__)


class ExecutionFailedError(DurablyError):
    """Waiting on an execution that ended ``FAILED`` (or ``COMPENSATION_FAILED``)."""

    def __init__(self, execution_id: str, error: dict[str, Any] | None) -> None:
        self.execution_id = execution_id
        self.error = error or {}
        kind = self.error.get("type", "Error")
        msg = self.error.get("message", "")
        super().__init__(f"execution {execution_id} failed: {kind}: {msg}")


class ChildFailedError(DurablyError):
    """A child workflow (``ctx.child``) ended ``FAILED``: raised in its parent, which may
    catch it. ``error_type`` and ``error_message`` are the child's error."""

    def __init__(self, child_id: str, step_id: str, error: dict[str, Any] | None) -> None:
        self.child_id = child_id
        self.step_id = step_id
        self.error = error or {}
        self.error_type = str(self.error.get("type", "Error"))
        self.error_message = str(self.error.get("message", ""))
        super().__init__(
            f"child execution {child_id} (step {step_id!r}) failed: "
            f"{self.error_type}: {self.error_message}"
        )


class ExecutionCancelledError(DurablyError):
    """Waiting on an execution that was cancelled."""

    def __init__(self, execution_id: str, reason: str | None) -> None:
        self.execution_id = execution_id
        self.reason = reason
        super().__init__(f"execution {execution_id} was cancelled: {reason or 'no reason given'}")


class WaitTimeoutError(DurablyError, TimeoutError):
    """``engine.wait(..., timeout=)`` ran out before the execution finished (it goes on)."""


class SignalTimeoutError(DurablyError, TimeoutError):
    """``wait_for_signal`` without a ``timeout=`` result shape timed out."""


class SignalPayloadError(DurablyError, TypeError):
    """``wait_for_signal`` took a signal whose payload does not fit the signal's type.

    Sent by a sender that did not know the type (the command line, a client naming the
    signal by a string). The signal is consumed and recorded as rejected, so the wait
    raises this on every replay alike and never takes it again. Catch it to wait again;
    uncaught, it fails the execution, and an operator's retry makes the wait wait for the
    next signal.
    """

    def __init__(
        self,
        message: str,
        *,
        signal: str,
        step_id: str,
        expected: str,
        payload: Any,
        execution_id: str | None = None,
    ) -> None:
        self.signal = signal
        self.step_id = step_id
        self.expected = expected
        self.payload = payload
        self.execution_id = execution_id
        super().__init__(message)


class StoreError(DurablyError):
    """The store failed; the batch that hit it was not acknowledged."""


class StoreLockedError(StoreError):
    """Another worker process already holds the store at this path."""


class LeaseLostError(DurablyError):
    """A write of this worker was refused because the lease of the execution's shard is
    no longer its own (it paused past the lease period, or was cut off, and another
    worker took the shard over). Nothing of the write was kept; the execution goes on
    at its new owner, and this worker stops its actor. Not a ``StoreError``: the rest of
    the batch it rode in commits."""


class StoreUnavailableError(StoreError):
    """The store's database server cannot be reached (not running, a wrong address, the
    connection lost); nothing of the call was acknowledged. The message names the server."""


class StoreVersionError(StoreError):
    """The store was written by a newer durably than this one (its schema version is
    newer); nothing was changed. Upgrade durably to open it."""


class StoreFullError(StoreError):
    """The disk (or the configured map ceiling) is full; nothing was acknowledged."""


class CorruptRecordError(StoreError):
    """A stored record failed its checksum or has an unknown format version."""

    def __init__(self, message: str, *, execution_id: str | None = None) -> None:
        self.execution_id = execution_id
        super().__init__(message)


class StoreClosedError(StoreError):
    """The store was used after it was closed."""


class StoreCorruptError(StoreError):
    """The store's files are damaged beyond one execution's records: a truncated data
    file, a page LMDB cannot read, a damaged index. Nothing was written; the message names
    the file. Run ``durably check --store PATH`` to see what is damaged, and restore the
    store from a backup (docs/operations.md, "Backups")."""


class StorePathError(StoreError):
    """A store path that cannot hold a store: a file where its directory should be, a
    parent directory that does not exist, no permission. Raised when the engine or client
    opens; nothing was created. The message names the path and what to change."""


class StoreNotFoundError(StorePathError, FileNotFoundError):
    """No store at the path, and the caller opens only an existing one (a ``Client``
    without ``create=True``): a typo in the path does not create an empty store."""


class WorkflowTimeoutError(DurablyError, TimeoutError):
    """An execution ran past its workflow's ``timeout=`` (recorded as its failure)."""


class OperatorError(DurablyError, ValueError):
    """An operator action that does not fit the execution's state; nothing was written."""


class UnknownScheduleError(DurablyError, LookupError):
    """A schedule id that the store does not hold."""

    def __init__(self, schedule_id: str) -> None:
        self.schedule_id = schedule_id
        super().__init__(
            f"no schedule {schedule_id!r} in this store; check the id "
            "(engine.schedule and engine.ensure_schedule return it; "
            "an execution id is not a schedule id)"
        )


class DuplicateEnqueueError(DurablyError):
    """An enqueue whose ``dedup_id`` a queued or running execution of that queue holds."""

    def __init__(self, queue: str, dedup_id: str, existing: str) -> None:
        self.queue = queue
        self.dedup_id = dedup_id
        self.existing = existing
        super().__init__(
            f"queue {queue!r} already holds dedup_id {dedup_id!r}: execution {existing} "
            "is queued or running with it; wait for it (engine.wait) or use another "
            "dedup_id (it is free again once that execution ends)"
        )


class UnknownQueueError(DurablyError, LookupError):
    """A queue this engine does not declare."""

    def __init__(self, name: str, declared: list[str]) -> None:
        self.name = name
        super().__init__(
            f"no queue {name!r} is declared on this engine (declared: {declared or 'none'}); "
            "pass it in Engine(..., queues=[durably.Queue(name, ...)])"
        )
