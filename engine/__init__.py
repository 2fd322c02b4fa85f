"""durably: a durable workflow engine that runs inside your Python process.

Write workflows as async functions; every durable call's outcome goes to an event log
(LMDB by default), and after any wake-up or restart the function replays from the top,
answered by the log, until it reaches new work.
"""

from . import _codec as codec
from ._audit import KINDS as AUDIT_KINDS
from ._audit import AuditEntry as AuditEntry
from ._bus import Emission as Emission
from ._bus import Subscription as Subscription
from ._clock import Clock as Clock
from ._context import Branch as Branch
from ._context import Context as Context
from ._context import StepInfo as StepInfo
from ._context import current_step as current_step
from ._describe import FlowNode as FlowNode
from ._describe import FlowShape as FlowShape
from ._engine import Client as Client
from ._engine import Engine as Engine
from ._engine import RecoveryReport as RecoveryReport
from ._errors import (
    ConfigurationError as ConfigurationError,
)
from ._errors import (
    CorruptRecordError as CorruptRecordError,
)
from ._errors import (
    DuplicateStepError as DuplicateStepError,
)
from ._errors import (
    DurablyError as DurablyError,
)
from ._errors import (
    ExecutionCancelledError as ExecutionCancelledError,
)
from ._errors import (
    ExecutionFailedError as ExecutionFailedError,
)
from ._errors import (
    NonDeterminismError as NonDeterminismError,
)
from ._errors import (
    OperatorError as OperatorError,
)
from ._errors import (
    PayloadError as PayloadError,
)
from ._errors import (
    SignalTimeoutError as SignalTimeoutError,
)
from ._errors import (
    StepError as StepError,
)
from ._errors import (
    StoreClosedError as StoreClosedError,
)
from ._errors import (
    StoreError as StoreError,
)
from ._errors import (
    StoreFullError as StoreFullError,
)
from ._errors import (
    StoreLockedError as StoreLockedError,
)
from ._errors import (
    UnknownExecutionError as UnknownExecutionError,
)
from ._errors import (
    UnknownWorkflowError as UnknownWorkflowError,
)
from ._errors import (
    WaitTimeoutError as WaitTimeoutError,
)
from ._errors import (
    WorkflowTimeoutError as WorkflowTimeoutError,
)
from ._operator import ExecutionDetail as ExecutionDetail
from ._operator import ExecutionPage as ExecutionPage
from ._operator import Operator as Operator
from ._operator import StepView as StepView
from ._retry import Retry as Retry
from ._schedules import CatchUp as CatchUp
from ._schedules import Overlap as Overlap
from ._schedules import Schedule as Schedule
from ._schedules import ScheduleStatus as ScheduleStatus
from ._schedules import UnknownScheduleError as UnknownScheduleError
from ._types import (
    Execution as Execution,
)
from ._types import (
    Received as Received,
)
from ._types import (
    Result as Result,
)
from ._types import (
    Signal as Signal,
)
from ._types import (
    SignalDelivery as SignalDelivery,
)
from ._types import (
    SignalOutcome as SignalOutcome,
)
from ._types import (
    Status as Status,
)
from ._types import (
    TimedOut as TimedOut,
)
from ._workflow import WorkflowDefinition as WorkflowDefinition
from ._workflow import workflow as workflow

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
