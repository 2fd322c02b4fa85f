"""What a client may ask the store's worker to run, and the checks every request passes.

A call (a schedule change, an operator action) travels through the store: the client
writes the request, the worker runs it and writes the answer. Whoever can write the store
may ask, but a request is data, never code: it is JSON, checked here field by field
against the call's signature before anything runs, and refused with a ``DurablyError``
that says what is wrong (unknown call, a missing, extra or mistyped argument, a bad
date). Nothing is unpickled or evaluated.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
import orjson

from ._errors import ConfigurationError

#: How long a client waits for the worker's answer; a request past it is not run.
CALL_TIMEOUT_S = 30.0
#: Answers nobody collected (their caller died) are removed once this old.
REPLY_TTL_MS = 5 * 60 * 1000
#: The longest error message an answer carries (a message, not a dump).
_MAX_ERROR_CHARS = 4000


@attrs.frozen
class Arg:
    """One argument of a call: its JSON kind and whether the caller must give it."""

    name: str
    kind: str  # "str", "str?", "number?", "date?", "json"
    required: bool = False


def _op_args(*extra: Arg) -> tuple[Arg, ...]:
    return (Arg("execution_id", "str", True), *extra, Arg("by", "str?"))


_SCHEDULE_ID = (Arg("schedule_id", "str", True),)

#: Every call a client may ask the worker to run, with its arguments.
CALLS: dict[str, tuple[Arg, ...]] = {
    "retry": _op_args(Arg("reason", "str?")),
    "retry_rollback": _op_args(Arg("reason", "str?")),
    "cancel": _op_args(Arg("reason", "str?")),
    "force_fail": _op_args(Arg("reason", "str", True)),
    "skip_step": _op_args(
        Arg("step_id", "str", True), Arg("result", "json"), Arg("reason", "str?")
    ),
    "schedule": (
        Arg("workflow", "str", True),
        Arg("input", "json"),
        Arg("at", "date?"),
        Arg("delay", "number?"),
        Arg("catch_up", "str"),
        Arg("id", "str?"),
    ),
    "ensure_schedule": (
        Arg("workflow", "str", True),
        Arg("input", "json"),
        Arg("id", "str", True),
        Arg("cron", "str?"),
        Arg("interval", "number?"),
        Arg("timezone", "str?"),
        Arg("catch_up", "str"),
        Arg("overlap", "str"),
    ),
    "pause_schedule": _SCHEDULE_ID,
    "resume_schedule": _SCHEDULE_ID,
    "remove_schedule": _SCHEDULE_ID,
    "update_schedule": (
        *_SCHEDULE_ID,
        Arg("cron", "str?"),
        Arg("interval", "number?"),
        Arg("timezone", "str?"),
        Arg("input", "json"),
        Arg("catch_up", "str?"),
        Arg("overlap", "str?"),
    ),
}


def check_call(method: Any, args: Any) -> tuple[str, dict[str, Any]]:
    """``(method, arguments)`` ready to run: dates parsed, absent optionals left out.

    Raises ``ConfigurationError`` naming the first thing wrong.
    """
    if not isinstance(method, str) or method not in CALLS:
        raise ConfigurationError(
            f"unknown call {str(method)[:80]!r}; the worker runs {', '.join(sorted(CALLS))}"
        )
    if not isinstance(args, dict):
        raise ConfigurationError(
            f"the arguments of {method} must be a JSON object, not {type(args).__name__}"
        )
    spec = {arg.name: arg for arg in CALLS[method]}
    extra = sorted(str(name)[:80] for name in args if name not in spec)
    if extra:
        raise ConfigurationError(
            f"{method} takes no argument {', '.join(extra)}; it takes {', '.join(spec)}"
        )
    out: dict[str, Any] = {}
    for name, arg in spec.items():
        if name not in args:
            if arg.required:
                raise ConfigurationError(f"{method} needs the argument {name}")
            continue
        out[name] = _checked(method, arg, args[name])
    return method, out


def _checked(method: str, arg: Arg, value: Any) -> Any:
    where = f"argument {arg.name} of {method}"
    if arg.kind == "json":
        return value
    if value is None and arg.kind.endswith("?"):
        return None
    if arg.kind in ("str", "str?"):
        if not isinstance(value, str):
            raise ConfigurationError(f"{where} must be a string, not {_kind(value)}")
        return value
    if arg.kind == "number?":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{where} must be a number of seconds, not {_kind(value)}")
        return value
    # "date?": an ISO 8601 string, as the client's face wrote it
    if not isinstance(value, str):
        raise ConfigurationError(f"{where} must be an ISO 8601 date string, not {_kind(value)}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{where} is not an ISO 8601 date: {value[:80]!r} (e.g. 2026-01-31T09:00:00+00:00)"
        ) from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- the request and the answer, as stored ----------------------------------------------


@attrs.frozen
class Request:
    """A call as the worker reads it from the store."""

    method: Any
    args: Any
    #: The client's reply socket, told (best effort) once the answer is stored.
    reply: str | None
    #: Past this (engine clock ms) the caller has given up: the call is not run.
    deadline_ms: int


def encode_request(method: str, args: dict[str, Any], reply: str | None, deadline_ms: int) -> bytes:
    """The request as stored; raises ``TypeError`` for a value JSON cannot hold."""
    return orjson.dumps(
        {"method": method, "args": args, "reply": reply, "deadline_ms": deadline_ms}
    )


def decode_request(body: bytes, max_socket_path: int) -> Request:
    """The stored request, checked; ``ConfigurationError`` if it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ConfigurationError("the call request is not JSON") from None
    if not isinstance(data, dict) or set(data) != {"method", "args", "reply", "deadline_ms"}:
        raise ConfigurationError(
            "the call request must be an object of method, args, reply and deadline_ms"
        )
    reply, deadline = data["reply"], data["deadline_ms"]
    if reply is not None and not is_socket_path(reply, max_socket_path):
        reply = None  # the answer is still stored; only the wake-up is skipped
    if isinstance(deadline, bool) or not isinstance(deadline, int):
        raise ConfigurationError("the call request's deadline_ms must be an integer")
    return Request(data["method"], data["args"], reply, deadline)


def is_socket_path(value: Any, limit: int) -> bool:
    """Whether ``value`` can be a unix socket address to send to."""
    return (
        isinstance(value, str)
        and value.startswith("/")
        and "\x00" not in value
        and len(value.encode(errors="replace")) <= limit
    )


def encode_reply(value: Any = None, error: BaseException | None = None) -> bytes:
    """The answer as stored: a string value, or the error's type name and message."""
    if error is None:
        return orjson.dumps({"value": value if isinstance(value, str) else None, "error": None})
    message = str(error)[:_MAX_ERROR_CHARS] or type(error).__name__
    return orjson.dumps({"value": None, "error": message, "kind": type(error).__name__})


@attrs.frozen
class Reply:
    value: str | None
    error: str | None
    kind: str | None


def decode_reply(body: bytes) -> Reply:
    """The stored answer, checked; ``ConfigurationError`` if it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ConfigurationError("the worker's answer is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigurationError("the worker's answer is not a JSON object")
    value, error, kind = data.get("value"), data.get("error"), data.get("kind")
    if not all(x is None or isinstance(x, str) for x in (value, error, kind)):
        raise ConfigurationError("the worker's answer has a field that is not a string")
    return Reply(value, error, kind)
