"""durably: a durable workflow engine that runs inside your Python process.

Write workflows as async functions; every durable call's outcome goes to an event log
(LMDB by default), and after any wake-up or restart the function replays from the top,
answered by the log, until it reaches new work.
"""

from ._engine import Client as Client
from ._engine import Engine as Engine
from ._engine import RecoveryReport as RecoveryReport
from .core import _codec as codec
from .core._audit import KINDS as AUDIT_KINDS
from .core._audit import AuditEntry as AuditEntry
from .core._errors import (
    ConfigurationError as ConfigurationError,
)
from .core._errors import (
    CorruptRecordError as CorruptRecordError,
)
from .core._errors import (
    DuplicateStepError as DuplicateStepError,
)
from .core._errors import (
    DurablyError as DurablyError,
)
from .core._errors import (
    ExecutionCancelledError as ExecutionCancelledError,
)
from .core._errors import (
    ExecutionFailedError as ExecutionFailedError,
)
from .core._errors import (
    NonDeterminismError as NonDeterminismError,
)
from .core._errors import (
    OperatorError as OperatorError,
)
from .core._errors import (
    PayloadError as PayloadError,
)
from .core._errors import (
    SignalTimeoutError as SignalTimeoutError,
)
from .core._errors import (
    StepError as StepError,
)
from .core._errors import (
    StoreClosedError as StoreClosedError,
)
from .core._errors import (
    StoreError as StoreError,
)
from .core._errors import (
    StoreFullError as StoreFullError,
)
from .core._errors import (
    StoreLockedError as StoreLockedError,
)
from .core._errors import (
    UnknownExecutionError as UnknownExecutionError,
)
from .core._errors import (
    UnknownWorkflowError as UnknownWorkflowError,
)
from .core._errors import (
    WaitTimeoutError as WaitTimeoutError,
)
from .core._errors import (
    WorkflowTimeoutError as WorkflowTimeoutError,
)
from .core._retry import Retry as Retry
from .core._types import (
    Execution as Execution,
)
from .core._types import (
    Received as Received,
)
from .core._types import (
    Result as Result,
)
from .core._types import (
    Signal as Signal,
)
from .core._types import (
    SignalDelivery as SignalDelivery,
)
from .core._types import (
    SignalOutcome as SignalOutcome,
)
from .core._types import (
    Status as Status,
)
from .core._types import (
    TimedOut as TimedOut,
)
from .core._workflow import WorkflowDefinition as WorkflowDefinition
from .core._workflow import workflow as workflow
from .runtime._bus import Emission as Emission
from .runtime._bus import Subscription as Subscription
from .runtime._clock import Clock as Clock
from .runtime._context import Branch as Branch
from .runtime._context import Context as Context
from .runtime._context import StepInfo as StepInfo
from .runtime._context import current_step as current_step
from .runtime._describe import FlowNode as FlowNode
from .runtime._describe import FlowShape as FlowShape
from .runtime._operator import ExecutionDetail as ExecutionDetail
from .runtime._operator import ExecutionPage as ExecutionPage
from .runtime._operator import Operator as Operator
from .runtime._operator import StepView as StepView
from .runtime._schedules import CatchUp as CatchUp
from .runtime._schedules import Overlap as Overlap
from .runtime._schedules import Schedule as Schedule
from .runtime._schedules import ScheduleStatus as ScheduleStatus
from .runtime._schedules import UnknownScheduleError as UnknownScheduleError

__version__ = "0.1.0"

__all__ = [
    "AUDIT_KINDS",
    "AuditEntry",
    "Branch",
    "CatchUp",
    "Client",
    "Clock",
    "ConfigurationError",
    "Context",
    "CorruptRecordError",
    "DuplicateStepError",
    "DurablyError",
    "Emission",
    "Engine",
    "Execution",
    "ExecutionCancelledError",
    "ExecutionDetail",
    "ExecutionFailedError",
    "ExecutionPage",
    "FlowNode",
    "FlowShape",
    "NonDeterminismError",
    "Operator",
    "OperatorError",
    "Overlap",
    "PayloadError",
    "Received",
    "RecoveryReport",
    "Result",
    "Retry",
    "Schedule",
    "ScheduleStatus",
    "Signal",
    "SignalDelivery",
    "SignalOutcome",
    "SignalTimeoutError",
    "Status",
    "StepError",
    "StepInfo",
    "StepView",
    "StoreClosedError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "Subscription",
    "TimedOut",
    "UnknownExecutionError",
    "UnknownScheduleError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WorkflowDefinition",
    "WorkflowTimeoutError",
    "codec",
    "current_step",
    "workflow",
]
