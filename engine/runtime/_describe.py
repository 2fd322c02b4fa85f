"""``engine.describe(workflow)``: a workflow's shape, recorded without running it.

The workflow function runs against a recording context: every durable call becomes a
node and returns at once, and no step body, branch, compensation or matcher runs. Steps
return ``None`` (a signal wait ``None`` or ``TimedOut()``), so code that uses a step's
result may stop early: the shape then holds the nodes up to there and says why it
stopped (``stopped``). Branching in plain ``if`` statements is invisible to a recorder;
model it with ``ctx.switch`` for the shape to show it.
"""

from __future__ import annotations

import json
import uuid as _uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

import attrs

from ..core import _codec
from ..core._errors import ConfigurationError
from ..core._retry import Retry
from ..core._types import Signal, TimedOut
from ..core._workflow import WorkflowDefinition
from ._context import Branch, Context

T = TypeVar("T")

NodeKind = Literal["step", "sleep", "wait_for_signal", "emit", "switch", "note"]


@attrs.frozen
class FlowNode:
    """One durable call of a workflow. Fields other than ``kind``/``step_id`` by kind:

    ``step``: ``has_compensation``, ``has_retry``, ``timeout``; ``sleep``: ``seconds``
    or ``until``; ``wait_for_signal``: ``signal``, ``timeout``; ``emit``: ``event``;
    ``switch``: ``branches`` (ids, in order) and ``default``; ``note``: ``message``.
    """

    kind: NodeKind
    step_id: str
    has_compensation: bool = False
    has_retry: bool = False
    timeout: float | None = None
    seconds: float | None = None
    until: str | None = None
    signal: str | None = None
    event: str | None = None
    branches: tuple[str, ...] = ()
    default: str | None = None
    message: str | None = None

    _FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "step": ("has_compensation", "has_retry", "timeout"),
        "sleep": ("seconds", "until"),
        "wait_for_signal": ("signal", "timeout"),
        "emit": ("event",),
        "switch": ("branches", "default"),
        "note": ("message",),
    }

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "step_id": self.step_id}
        for name in self._FIELDS[self.kind]:
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        return data


@attrs.frozen
class FlowShape:
    """The recorded shape of a workflow: its nodes in call order."""

    workflow: str
    nodes: tuple[FlowNode, ...]
    #: Why recording stopped before the workflow returned (``None``: it returned).
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "nodes": [n.to_dict() for n in self.nodes],
            "stopped": self.stopped,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart TD``: nodes in order; a switch fans out to its branches."""
        lines = ["flowchart TD", f'    start(["{_esc(self.workflow)}"])']
        previous = ["start"]
        for index, node in enumerate(self.nodes, 1):
            name = f"n{index}"
            label = _esc(_label(node))
            if node.kind == "switch":
                lines.append(f'    {name}{{"{label}"}}')
            elif node.kind in ("sleep", "wait_for_signal"):
                lines.append(f'    {name}(["{label}"])')
            elif node.kind in ("emit", "note"):
                lines.append(f'    {name}>"{label}"]')
            else:
                lines.append(f'    {name}["{label}"]')
            lines.extend(f"    {p} --> {name}" for p in previous)
            previous = [name]
            if node.kind == "switch":
                arms = [(b, b) for b in node.branches]
                if node.default is not None:
                    arms.append((node.default, f"{node.default} (default)"))
                previous = []
                for arm, (branch, text) in enumerate(arms, 1):
                    arm_name = f"{name}b{arm}"
                    lines.append(f'    {arm_name}["{_esc(branch)}"]')
                    lines.append(f'    {name} -->|"{_esc(text)}"| {arm_name}')
                    previous.append(arm_name)
        end = "stop" if self.stopped is None else "stopped"
        text = "end" if self.stopped is None else "stopped: " + self.stopped
        lines.append(f'    {end}(["{_esc(text)}"])')
        lines.extend(f"    {p} --> {end}" for p in previous)
        return "\n".join(lines) + "\n"


def _label(node: FlowNode) -> str:
    match node.kind:
        case "step":
            marks = [
                m for m, on in (("undo", node.has_compensation), ("retry", node.has_retry)) if on
            ]
            return f"step {node.step_id}" + (f" ({', '.join(marks)})" if marks else "")
        case "sleep":
            return (
                f"sleep {node.seconds} s"
                if node.seconds is not None
                else f"sleep until {node.until}"
            )
        case "wait_for_signal":
            limit = f", timeout {node.timeout} s" if node.timeout is not None else ""
            return f"wait for {node.signal}{limit}"
        case "emit":
            return f"emit {node.event}"
        case "switch":
            return f"switch {node.step_id}"
        case _:
            return f"note: {node.message}"


def _esc(text: str) -> str:
    # Mermaid labels are quoted; quotes and angle brackets need its entity codes.
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


class Recorder(Context):
    """A ``Context`` that records each durable call as a node and runs nothing."""

    def __init__(self, workflow: str) -> None:  # no actor: nothing is durable here
        self._workflow = workflow
        self._counters: dict[str, int] = {}
        self.nodes: list[FlowNode] = []
        self._seen: set[str] = set()

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
    except Exception as exc:
        stopped = f"{type(exc).__name__}: {exc}"
    return FlowShape(definition.name, tuple(recorder.nodes), stopped)
