"""durably's storage layer: the ``Store`` protocol and its two implementations.

``LmdbStore`` is the durable default; ``MemoryStore`` has the same semantics without
durability (tests, development); ``PostgresStore`` keeps the store in a PostgreSQL
database (``durably[postgres]``: imported on first use, so that this package never needs
psycopg). All run one layout (``_layout.py``), so one conformance suite
(``durably.testing.check_store``) covers them all.
"""

from typing import TYPE_CHECKING, Any

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
    Fence as Fence,
    Heartbeat as Heartbeat,
    InboxEntry as InboxEntry,
    LeaseInfo as LeaseInfo,
    Leases as Leases,
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
    ResetLog as ResetLog,
    SignalOutcome as SignalOutcome,
    SignalWithStart as SignalWithStart,
    SignalWithStartResult as SignalWithStartResult,
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

if TYPE_CHECKING:
    from ._postgres import PostgresStore as PostgresStore


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":  # psycopg is imported only by whoever asks for it
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "Fence",
    "Heartbeat",
    "InboxEntry",
    "LeaseInfo",
    "Leases",
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
    "ResetLog",
    "SignalOutcome",
    "SignalWithStart",
    "SignalWithStartResult",
    "Store",
    "TakeInbox",
    "TakeReply",
    "TakeSignal",
    "Timer",
    "WithdrawCall",
    "quarantined_record",
]
