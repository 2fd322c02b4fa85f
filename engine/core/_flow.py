"""The shape of a workflow (``engine.describe``): its durable calls as data, JSON or a
Mermaid flowchart."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import attrs

NodeKind = Literal[
    "step",
    "sleep",
    "wait_for_signal",
    "emit",
    "switch",
    "note",
    "gather",
    "child",
    "patch",
    "publish",
    "continue_as_new",
]


@attrs.frozen
class FlowNode:
    """One durable call of a workflow. Fields other than ``kind``/``step_id`` by kind:

    ``step``: ``has_compensation``, ``has_retry``, ``timeout``; ``sleep``: ``seconds``
    or ``until``; ``wait_for_signal``: ``signal``, ``timeout``; ``emit``: ``event``;
    ``switch``: ``branches`` (ids, in order) and ``default``; ``note``: ``message``;
    ``gather``: ``members`` (the step ids of its calls, which follow it as nodes) and
    ``limit``; ``child``: ``workflow`` and ``detached``; ``patch``: ``patch``;
    ``publish``: ``key``.
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
    members: tuple[str, ...] = ()
    limit: int | None = None
    workflow: str | None = None
    detached: bool = False
    patch: str | None = None
    key: str | None = None

    _FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "step": ("has_compensation", "has_retry", "timeout"),
        "sleep": ("seconds", "until"),
        "wait_for_signal": ("signal", "timeout"),
        "emit": ("event",),
        "switch": ("branches", "default"),
        "note": ("message",),
        "gather": ("members", "limit"),
        "child": ("workflow", "detached"),
        "patch": ("patch",),
        "publish": ("key",),
        "continue_as_new": (),
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
        fan: list[str] = []  # the gather whose members are being drawn, then its ends
        members_left = 0
        for index, node in enumerate(self.nodes, 1):
            name = f"n{index}"
            label = _esc(_label(node))
            if members_left:  # a member: drawn beside the others, from the gather
                lines.append(f'    {name}["{label}"]')
                lines.append(f"    {fan[0]} --> {name}")
                fan.append(name)
                members_left -= 1
                if not members_left:
                    previous = fan[1:] or fan[:1]
                continue
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
            if node.kind == "gather" and node.members:
                fan, members_left = [name], len(node.members)
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
        case "gather":
            limit = f", limit {node.limit}" if node.limit is not None else ""
            return f"gather {len(node.members)}{limit}"
        case "child":
            return f"child {node.workflow}" + (" (detached)" if node.detached else "")
        case "patch":
            return f"patch {node.patch}"
        case "publish":
            return f"publish {node.key}"
        case "continue_as_new":
            return "continue as new"
        case _:
            return f"note: {node.message}"


def _esc(text: str) -> str:
    # Mermaid labels are quoted; quotes and angle brackets need its entity codes.
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )
