"""durably's storage layer: the ``Store`` protocol and its two implementations.

``LmdbStore`` is the durable default; ``MemoryStore`` has the same semantics without
durability (tests, development). Both run one layout (``_layout.py``), so one conformance
suite (``durably.testing.check_store``) covers both.
"""

from ..core._records import (
    ACTIVE_STATUSES as ACTIVE_STATUSES,
)
from ..core._records import (
    ALL_STATUSES as ALL_STATUSES,
)
from ..core._records import (
    TERMINAL_STATUSES as TERMINAL_STATUSES,
)
from ..core._records import (
    AddTimer as AddTimer,
)
from ..core._records import (
    Append as Append,
)
from ..core._records import (
    CreateExecution as CreateExecution,
)
from ..core._records import (
    DeleteSchedule as DeleteSchedule,
)
from ..core._records import (
    ExecutionRecord as ExecutionRecord,
)
from ..core._records import (
    MailboxEntry as MailboxEntry,
)
from ..core._records import (
    Op as Op,
)
from ..core._records import (
    PutExecution as PutExecution,
)
from ..core._records import (
    PutMeta as PutMeta,
)
from ..core._records import (
    PutSchedule as PutSchedule,
)
from ..core._records import (
    PutSignal as PutSignal,
)
from ..core._records import (
    PutSignalResult as PutSignalResult,
)
from ..core._records import (
    RemoveTimer as RemoveTimer,
)
from ..core._records import (
    SignalOutcome as SignalOutcome,
)
from ..core._records import (
    TakeSignal as TakeSignal,
)
from ..core._records import (
    Timer as Timer,
)
from ..core._records import (
    quarantined_record as quarantined_record,
)
from ._lmdb import LmdbStore as LmdbStore
from ._memory import MemoryStore as MemoryStore
from ._protocol import Store as Store

__all__ = [
    "ACTIVE_STATUSES",
    "ALL_STATUSES",
    "TERMINAL_STATUSES",
    "AddTimer",
    "Append",
    "CreateExecution",
    "DeleteSchedule",
    "ExecutionRecord",
    "LmdbStore",
    "MailboxEntry",
    "MemoryStore",
    "Op",
    "PutExecution",
    "PutMeta",
    "PutSchedule",
    "PutSignal",
    "PutSignalResult",
    "RemoveTimer",
    "SignalOutcome",
    "Store",
    "TakeSignal",
    "Timer",
    "quarantined_record",
]
