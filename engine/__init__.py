"""durably: a durable workflow engine that runs inside your Python process.

Write workflows as async functions; every durable call's outcome goes to an event log
(LMDB by default), and after any wake-up or restart the function replays from the top,
answered by the log, until it reaches new work.
"""

from ._engine import Engine as Engine, EngineStatistics as EngineStatistics
from .core import _codec as codec
from .core._audit import KINDS as AUDIT_KINDS, AuditEntry as AuditEntry
from .core._errors import (
    ChildFailedError as ChildFailedError,
    ConfigurationError as ConfigurationError,
    CorruptRecordError as CorruptRecordError,
    DuplicateEnqueueError as DuplicateEnqueueError,
    DuplicateStepError as DuplicateStepError,
    DurablyError as DurablyError,
    ExecutionCancelledError as ExecutionCancelledError,
    ExecutionFailedError as ExecutionFailedError,
    NonDeterminismError as NonDeterminismError,
    OperatorError as OperatorError,
    PayloadError as PayloadError,
    SignalPayloadError as SignalPayloadError,
    SignalTimeoutError as SignalTimeoutError,
    StepError as StepError,
    StoreClosedError as StoreClosedError,
    StoreCorruptError as StoreCorruptError,
    StoreError as StoreError,
    StoreFullError as StoreFullError,
    StoreLockedError as StoreLockedError,
    StoreNotFoundError as StoreNotFoundError,
    StorePathError as StorePathError,
    StoreUnavailableError as StoreUnavailableError,
    StoreVersionError as StoreVersionError,
    UnknownExecutionError as UnknownExecutionError,
    UnknownQueueError as UnknownQueueError,
    UnknownScheduleError as UnknownScheduleError,
    UnknownWorkflowError as UnknownWorkflowError,
    WaitTimeoutError as WaitTimeoutError,
    WorkflowTimeoutError as WorkflowTimeoutError,
)
from .core._flow import FlowNode as FlowNode, FlowShape as FlowShape
from .core._queue import Queue as Queue, QueueStats as QueueStats
from .core._retry import Retry as Retry
from .core._schedule import (
    CatchUp as CatchUp,
    Overlap as Overlap,
    Schedule as Schedule,
    ScheduleStatus as ScheduleStatus,
)
from .core._steps import (
    ChildView as ChildView,
    ExecutionDetail as ExecutionDetail,
    ExecutionPage as ExecutionPage,
    StepView as StepView,
)
from .core._types import (
    Execution as Execution,
    Received as Received,
    Result as Result,
    Signal as Signal,
    SignalDelivery as SignalDelivery,
    SignalOutcome as SignalOutcome,
    Status as Status,
    TimedOut as TimedOut,
)
from .core._workflow import WorkflowDefinition as WorkflowDefinition, workflow as workflow
from .remote._client import Client as Client
from .runtime._branching import Branch as Branch
from .runtime._bus import Emission as Emission, Subscription as Subscription
from .runtime._children import ChildHandle as ChildHandle
from .runtime._clock import Clock as Clock
from .runtime._context import Context as Context
from .runtime._operator import Operator as Operator
from .runtime._primitive import StepInfo as StepInfo, current_step as current_step
from .runtime._supervisor import RecoveryReport as RecoveryReport

__version__ = "0.1.0"

__all__ = [
    "AUDIT_KINDS",
    "AuditEntry",
    "Branch",
    "CatchUp",
    "ChildFailedError",
    "ChildHandle",
    "ChildView",
    "Client",
    "Clock",
    "ConfigurationError",
    "Context",
    "CorruptRecordError",
    "DuplicateEnqueueError",
    "DuplicateStepError",
    "DurablyError",
    "Emission",
    "Engine",
    "EngineStatistics",
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
    "Queue",
    "QueueStats",
    "Received",
    "RecoveryReport",
    "Result",
    "Retry",
    "Schedule",
    "ScheduleStatus",
    "Signal",
    "SignalDelivery",
    "SignalOutcome",
    "SignalPayloadError",
    "SignalTimeoutError",
    "Status",
    "StepError",
    "StepInfo",
    "StepView",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StorePathError",
    "StoreUnavailableError",
    "StoreVersionError",
    "Subscription",
    "TimedOut",
    "UnknownExecutionError",
    "UnknownQueueError",
    "UnknownScheduleError",
    "UnknownWorkflowError",
    "WaitTimeoutError",
    "WorkflowDefinition",
    "WorkflowTimeoutError",
    "codec",
    "current_step",
    "workflow",
]
