"""durably's storage layer: the ``Store`` protocol and its two implementations.

``LmdbStore`` is the durable default; ``MemoryStore`` has the same semantics without
durability (tests, development). Both run one layout (``_layout.py``), so one conformance
suite (``durably.testing.check_store``) covers both.
"""

from ._lmdb import LmdbStore as LmdbStore
from ._memory import MemoryStore as MemoryStore
from ._model import (
    ACTIVE_STATUSES as ACTIVE_STATUSES,
)
from ._model import (
    ALL_STATUSES as ALL_STATUSES,
)
from ._model import (
    TERMINAL_STATUSES as TERMINAL_STATUSES,
)
from ._model import (
    AddTimer as AddTimer,
)
from ._model import (
    Append as Append,
)
from ._model import (
    CreateExecution as CreateExecution,
)
from ._model import (
    DeleteSchedule as DeleteSchedule,
)
from ._model import (
    ExecutionRecord as ExecutionRecord,
)
from ._model import (
    MailboxEntry as MailboxEntry,
)
from ._model import (
    Op as Op,
)
from ._model import (
    PutExecution as PutExecution,
)
from ._model import (
    PutMeta as PutMeta,
)
from ._model import (
    PutSchedule as PutSchedule,
)
from ._model import (
    PutSignal as PutSignal,
)
from ._model import (
    PutSignalResult as PutSignalResult,
)
from ._model import (
    RemoveTimer as RemoveTimer,
)
from ._model import (
    SignalOutcome as SignalOutcome,
)
from ._model import (
    TakeSignal as TakeSignal,
)
from ._model import (
    Timer as Timer,
)
from ._model import (
    quarantined_record as quarantined_record,
)
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
