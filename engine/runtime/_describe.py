"""``engine.describe(workflow)``: a workflow's shape, recorded without running it.

The workflow function runs against a recording context: every durable call becomes a
node and returns at once, and no step body, branch, compensation or matcher runs. Steps
return ``None`` (a signal wait ``None`` or ``TimedOut()``), so code that uses a step's
result may stop early: the shape then holds the nodes up to there and says why it
stopped (``stopped``). Branching in plain ``if`` statements is invisible to a recorder;
model it with ``ctx.switch`` for the shape to show it.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from ..core import _codec
from ..core._errors import ConfigurationError
from ..core._flow import FlowNode, FlowShape
from ..core._retry import Retry
from ..core._types import Signal, TimedOut
from ..core._workflow import WorkflowDefinition, workflow as _workflow
from ._branching import Branch
from ._children import ChildHandle
from ._context import Context

T = TypeVar("T")


class Recorder(Context):
    """A ``Context`` that records each durable call as a node and runs nothing."""

    def __init__(self, workflow: str) -> None:  # no actor: nothing is durable here
        self._workflow = workflow
        self._counters: dict[str, int] = {}
        self.nodes: list[FlowNode] = []
        self._seen: set[str] = set()
        self._busy = False
        self._members = None
        self._patches = None

    @property
    def execution_id(self) -> str:
        return "describe"

    @property
    def workflow(self) -> str:
        return self._workflow

    @property
    def attempt(self) -> int:
        return 1

    @property
    def replaying(self) -> bool:
        return False

    def _sid(self, step_id: str | None, kind: str) -> str:
        if step_id is not None:
            if not isinstance(step_id, str) or not step_id or "\x00" in step_id:
                raise ConfigurationError("a step id must be a non-empty string without NUL")
            sid = step_id
        else:
            count = self._counters.get(kind, 0) + 1
            self._counters[kind] = count
            sid = f"__{kind}:{count}"
        if sid in self._seen:
            raise ConfigurationError(f"step id {sid!r} is used twice in one workflow run")
        self._seen.add(sid)
        return sid

    async def step(
        self,
        step_id: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        compensate: Callable[[T], Any] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        self.nodes.append(
            FlowNode(
                "step",
                self._sid(step_id, "step"),
                has_compensation=compensate is not None,
                has_retry=retry is not None,
                timeout=timeout,
            )
        )
        return None  # type: ignore[return-value]

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        # Fixed values: describe must be reproducible.
        return {"now": 0, "random": 0.5, "uuid": str(_uuid.UUID(int=0))}[kind]

    async def sleep(
        self,
        seconds: float | None = None,
        *,
        until: datetime | None = None,
        step_id: str | None = None,
    ) -> None:
        self.nodes.append(
            FlowNode(
                "sleep",
                self._sid(step_id, "sleep"),
                seconds=seconds,
                until=None if until is None else until.astimezone(UTC).isoformat(),
            )
        )

    async def wait_for_signal(
        self,
        signal: Signal[Any] | str,
        *,
        timeout: float | None = None,
        step_id: str | None = None,
    ) -> Any:
        name = signal.name if isinstance(signal, Signal) else signal
        self.nodes.append(
            FlowNode("wait_for_signal", self._sid(step_id, "signal"), signal=name, timeout=timeout)
        )
        return None if timeout is None else TimedOut()

    async def emit(self, event: str, payload: Any = None, *, step_id: str | None = None) -> None:
        self.nodes.append(FlowNode("emit", self._sid(step_id, "emit"), event=event))

    async def note(self, message: str, *, step_id: str | None = None, **meta: Any) -> None:
        self.nodes.append(FlowNode("note", self._sid(step_id, "note"), message=message))

    async def switch(
        self,
        step_id: str,
        value: Any,
        branches: Sequence[Branch],
        *,
        default: Branch | None = None,
    ) -> Any:
        self.nodes.append(
            FlowNode(
                "switch",
                self._sid(step_id, "switch"),
                branches=tuple(b.id for b in branches),
                default=None if default is None else default.id,
            )
        )
        return None

    async def rollback(self) -> None:
        return None

    async def gather(
        self,
        *calls: Awaitable[T],
        limit: int | None = None,
        return_exceptions: bool = False,
        step_id: str | None = None,
    ) -> list[T]:
        # Members are awaited in order here (each returns at once): their nodes follow
        # the gather's, which names them.
        sid = self._sid(step_id, "gather")
        at = len(self.nodes)
        results = [await call for call in calls]
        members = tuple(node.step_id for node in self.nodes[at:])
        self.nodes.insert(at, FlowNode("gather", sid, members=members, limit=limit))
        return results

    async def start_child(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any,
        *,
        step_id: str | None = None,
        detached: bool = False,
    ) -> ChildHandle[Any]:
        name = workflow if isinstance(workflow, str) else workflow.name
        sid = self._sid(step_id, "child")
        self.nodes.append(FlowNode("child", sid, workflow=name, detached=detached))
        return ChildHandle("describe", sid, _NO_DEFINITION, self)

    async def _child_outcome(self, handle: ChildHandle[Any]) -> Any:
        return None

    def patched(self, patch_id: str) -> bool:
        if self._patches is None:
            self._patches = {}
        if patch_id not in self._patches:
            self._patches[patch_id] = True
            sid = self._sid("patch:" + patch_id, "patch")
            self.nodes.append(FlowNode("patch", sid, patch=patch_id))
        return True  # the shape of the new code

    async def publish(self, key: str, value: Any, *, step_id: str | None = None) -> None:
        self.nodes.append(FlowNode("publish", self._sid(step_id, "publish"), key=key))

    def continue_as_new(self, input: Any) -> NoReturn:
        self.nodes.append(FlowNode("continue_as_new", self._sid(None, "continue_as_new")))
        raise _ContinuesAsNew("continues as new")


class _ContinuesAsNew(Exception):
    """The recorded run ends here, as a real run would hand over to the next."""


@_workflow("durably.describe")
async def _nothing(ctx: Any, _: Any) -> None:
    return None


_NO_DEFINITION: WorkflowDefinition[Any, Any] = _nothing


async def describe(definition: WorkflowDefinition[Any, Any], input: Any = None) -> FlowShape:
    """Run ``definition`` against a ``Recorder``; see the module's notes."""
    data = input if input is not None else definition.defaults
    if data is not None:
        shaped = _codec.shape(data, f"describe input of workflow {definition.name!r}")
        data = _codec.load(shaped, definition.input_type, f"describe input of {definition.name!r}")
    recorder = Recorder(definition.name)
    stopped: str | None = None
    try:
        await definition.fn(recorder, data)
    except ConfigurationError:
        raise
    except _ContinuesAsNew as exc:
        stopped = str(exc)
    except Exception as exc:
        stopped = f"{type(exc).__name__}: {exc}"
    return FlowShape(definition.name, tuple(recorder.nodes), stopped)
