"""One batch applied over a backend's transaction: each op goes to the module that
gives it its meaning (``_layout.py``, ``_queues.py`` for the queue ops, ``_leases.py``
for many workers' leases)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core._records import (
    Admit,
    Debounce,
    Enqueue,
    Fence,
    ForgetAdmissions,
    Heartbeat,
    Op,
    PutQueue,
)
from ._layout import apply_op
from ._leases import fence, heartbeat
from ._queues import apply_queue_op
from ._txn import Txn


def _fence(txn: Txn, op: Any) -> None:
    fence(txn, op)


#: The ops another module gives their meaning (the rest are ``_layout.apply_op``'s).
_ELSEWHERE: dict[type, Callable[[Txn, Any], Any]] = {
    **dict.fromkeys((Enqueue, Debounce, Admit, ForgetAdmissions, PutQueue), apply_queue_op),
    Fence: _fence,
    Heartbeat: heartbeat,
}


def apply_ops(txn: Txn, ops: Sequence[Op]) -> list[Any]:
    elsewhere = _ELSEWHERE
    return [
        elsewhere[type(op)](txn, op) if type(op) in elsewhere else apply_op(txn, op) for op in ops
    ]
