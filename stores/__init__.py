"""durably's storage layer: the ``Store`` protocol and its two implementations.

``LmdbStore`` is the durable default; ``MemoryStore`` has the same semantics without
durability (tests, development). Both run one layout (``_layout.py``), so one conformance
suite (``durably.testing.check_store``) covers both.
"""

from ..core._records import (
    ACTIVE_STATUSES as ACTIVE_STATUSES,
    ALL_STATUSES as ALL_STATUSES,
    NEVER_MS as NEVER_MS,
    TERMINAL_STATUSES as TERMINAL_STATUSES,
    AddTimer as AddTimer,
    Append as Append,
    CreateExecution as CreateExecution,
    DeleteSchedule as DeleteSchedule,
    ExecutionRecord as ExecutionRecord,
    ExpireReplies as ExpireReplies,
    InboxEntry as InboxEntry,
    MailboxEntry as MailboxEntry,
    Notify as Notify,
    Op as Op,
    PutCall as PutCall,
    PutExecution as PutExecution,
    PutMeta as PutMeta,
    PutReply as PutReply,
    PutSchedule as PutSchedule,
    PutSignal as PutSignal,
    PutSignalResult as PutSignalResult,
    RemoveTimer as RemoveTimer,
    SignalOutcome as SignalOutcome,
    TakeInbox as TakeInbox,
    TakeReply as TakeReply,
    TakeSignal as TakeSignal,
    Timer as Timer,
    WithdrawCall as WithdrawCall,
    quarantined_record as quarantined_record,
)
from ._lmdb import LmdbStore as LmdbStore
from ._memory import MemoryStore as MemoryStore
from ._protocol import Store as Store

__all__ = [
    "ACTIVE_STATUSES",
    "ALL_STATUSES",
    "NEVER_MS",
    "TERMINAL_STATUSES",
    "AddTimer",
    "Append",
    "CreateExecution",
    "DeleteSchedule",
    "ExecutionRecord",
    "ExpireReplies",
    "InboxEntry",
    "LmdbStore",
    "MailboxEntry",
    "MemoryStore",
    "Notify",
    "Op",
    "PutCall",
    "PutExecution",
    "PutMeta",
    "PutReply",
    "PutSchedule",
    "PutSignal",
    "PutSignalResult",
    "RemoveTimer",
    "SignalOutcome",
    "Store",
    "TakeInbox",
    "TakeReply",
    "TakeSignal",
    "Timer",
    "WithdrawCall",
    "quarantined_record",
]
