"""One batch applied over a backend's transaction: each op goes to the module that
gives it its meaning (``_layout.py``, or ``_queues.py`` for the queue ops)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core._records import Admit, Debounce, Enqueue, ForgetAdmissions, Op, PutQueue
from ._layout import apply_op
from ._queues import apply_queue_op
from ._txn import Txn

_QUEUE_OPS = frozenset((Enqueue, Debounce, Admit, ForgetAdmissions, PutQueue))


def apply_ops(txn: Txn, ops: Sequence[Op]) -> list[Any]:
    queue_ops = _QUEUE_OPS
    return [apply_queue_op(txn, op) if type(op) in queue_ops else apply_op(txn, op) for op in ops]
