"""What a signal wait makes of the entry it takes: the payload restored to the signal's
type, or, when it does not fit, the rejection the wait records and raises.

A payload that does not fit was sent by a sender that did not know the type (the command
line, a client naming the signal by a string): a sender given the ``durably.Signal``
refuses it at the call. The wait consumes it as rejected (``SignalRejected``), so it is
never taken again, and raises ``SignalPayloadError`` from the record, on every replay
alike: catchable, and an operator's retry waits again instead of failing on it again.
"""

from __future__ import annotations

from typing import Any

import cattrs

from durably.stores import MailboxEntry

from ..core import _codec
from ..core._errors import PayloadError, SignalPayloadError
from ..core._events import SignalRejected
from ..core._types import Signal

#: How much of a payload that does not fit its message shows.
_SHOWN = 200


def restore(
    entry: MailboxEntry, sig: Signal[Any], sid: str, where: str
) -> tuple[Any, tuple[str, str] | None]:
    """``(value, None)``, or ``(None, (expected, message))`` for a payload that does not
    fit: the expected type's name and the whole ``SignalPayloadError`` message, which is
    recorded and so names no execution (a restored copy replays it word for word)."""
    try:
        return _codec.load(entry.payload, sig.payload_type, where), None
    except PayloadError:
        expected = getattr(sig.payload_type, "__qualname__", None) or repr(sig.payload_type)
        shown = repr(entry.payload)
        if len(shown) > _SHOWN:
            shown = shown[:_SHOWN] + "..."
        message = (
            f"signal {sig.name!r} at {sid!r}: its payload {shown} does not fit {expected} "
            f"({_why(entry.payload, sig.payload_type)}). It was consumed as rejected "
            "and is not taken again; its sender did not check it (the command line, or a "
            f"client naming the signal by a string: durably.Signal({sig.name!r}, "
            f"{expected}) checks it when sent). Catch durably.SignalPayloadError to wait "
            "again, or retry the execution: the wait then waits for the next signal."
        )
        return None, (expected, message)


def _why(payload: Any, tp: Any) -> str:
    """What is wrong with ``payload``, in cattrs' words where it has them (which field)."""
    try:
        _codec.converter.structure(payload, tp)
    except (cattrs.ClassValidationError, cattrs.IterableValidationError) as detail:
        return "; ".join(cattrs.transform_error(detail))
    except Exception:  # no finer detail: say what came
        pass
    return f"it is a value of type {type(payload).__name__}"


def payload_error(event: SignalRejected, execution_id: str) -> SignalPayloadError:
    """The error a recorded rejection raises (the first run's message, word for word)."""
    return SignalPayloadError(
        str(event.error.get("message", "")),
        signal=event.signal,
        step_id=event.step_id,
        expected=event.expected,
        payload=event.payload,
        execution_id=execution_id,
    )
