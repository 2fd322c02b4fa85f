"""Random workflow programs over every durable primitive, and the interpreter that runs them.

A program is JSON data (a list of ops), passed to one interpreter workflow as its input,
so a history records the program it ran. Step ids are explicit and unique; the values a
run observes (step results, signals, timeouts, switch results, recorded values) form the
workflow's result, so comparing results compares what the code saw.

Signals arrive on whole or half seconds; every timer of a program is due on a whole
second (steps take no virtual time), so some arrivals tie with a timer: the harness
delivers a tied signal just after the timer fires, in every run, and the properties
check that a crash does not change which side won.
"""

from __future__ import annotations

from typing import Any, Literal

from hypothesis import strategies as st

import durably
from durably.testing import Delivery

SIGNALS = ("a", "b", "c")

#: What the property tests checked in this session (printed at the end of the run).
STATS: dict[str, int] = {}
PLANS: set[str] = set()


def count(name: str, n: int = 1) -> None:
    STATS[name] = STATS.get(name, 0) + n


Program = list[dict[str, Any]]


class Tracker:
    """Counts the runs of step bodies, switch arms and compensations, per engine phase."""

    def __init__(self) -> None:
        self.phase = 1
        self.runs: list[tuple[int, str, str, int]] = []  # (phase, kind, id, attempt)

    def on_phase(self, phase: int) -> None:
        self.phase = phase

    def ran(self, kind: str, ident: str, attempt: int = 1) -> None:
        self.runs.append((self.phase, kind, ident, attempt))


@durably.workflow("program-child")
async def child(ctx: durably.Context, op: dict[str, Any]) -> int:
    """The child a program's ``child`` op starts: a sleep, then a value or a failure."""
    await ctx.sleep(op["seconds"], step_id="nap")
    if op["fail"]:
        raise LookupError(f"child {op['id']} fails")
    return int(op["value"]) * 2


async def _call(ctx: durably.Context, tracker: Tracker, op: dict[str, Any]) -> Any:
    """What one op of a program observes: the ops a gather may hold, and the others."""
    kind = op["op"]
    sid = op.get("id")
    if kind == "step":
        return await _step(ctx, tracker, op)
    if kind == "sleep":
        await ctx.sleep(op["seconds"], step_id=sid)
        return ["slept", sid]
    if kind == "wait":
        if op["timeout"] is None:
            return await ctx.wait_for_signal(op["signal"], step_id=sid)
        got = await ctx.wait_for_signal(op["signal"], timeout=op["timeout"], step_id=sid)
        return got.payload if isinstance(got, durably.Received) else "timed out"
    if kind == "child":
        try:
            return await ctx.child(child, op, step_id=sid)
        except durably.ChildFailedError as exc:
            return f"child error: {exc.error_type}"
    assert kind == "gather", kind
    calls = [_call(ctx, tracker, member) for member in op["members"]]
    try:
        got = await ctx.gather(*calls, limit=op["limit"], return_exceptions=op["keep"], step_id=sid)
    except durably.StepError as exc:
        return f"gather error: {exc.step_id}"
    return [f"error: {type(g).__name__}" if isinstance(g, BaseException) else g for g in got]


def interpreter(tracker: Tracker, name: str = "program") -> durably.WorkflowDefinition[Any, Any]:
    @durably.workflow(name)
    async def program(ctx: durably.Context, ops: Program) -> list[Any]:
        seen: list[Any] = []
        for op in ops:
            kind = op["op"]
            sid = op.get("id")
            if kind in ("step", "sleep", "wait", "child", "gather"):
                seen.append(await _call(ctx, tracker, op))
            elif kind == "patch":
                seen.append(ctx.patched(op["patch"]))
            elif kind == "publish":
                await ctx.publish("progress", len(seen), step_id=sid)
            elif kind == "switch":
                seen.append(await _switch(ctx, tracker, op))
            elif kind == "note":
                await ctx.note(op["message"], step_id=sid, index=len(seen))
            elif kind == "emit":
                await ctx.emit(op["event"], {"seen": len(seen)}, step_id=sid)
            elif kind == "value":
                value = {"now": ctx.now, "random": ctx.random, "uuid": ctx.uuid}[op["kind"]]()
                seen.append(str(value))
            elif kind == "rollback":
                await ctx.rollback()
                seen.append("rolled back")
            elif kind == "fail":
                raise RuntimeError(f"the program fails after {len(seen)} observations")
        return seen

    return program


async def _step(ctx: durably.Context, tracker: Tracker, op: dict[str, Any]) -> Any:
    sid = op["id"]

    def body() -> int:
        info = durably.current_step()
        assert info is not None and info.step_id == sid
        tracker.ran("step", sid, info.attempt)
        if op["outcome"] == "fail" or (op["outcome"] == "flaky" and info.attempt == 1):
            raise ValueError(f"{sid} failed on attempt {info.attempt}")
        return int(op["value"])

    def undo(value: int) -> None:
        tracker.ran("undo", sid)
        if not op["undo_ok"]:
            raise OSError(f"cannot undo {sid} ({value})")

    retry = durably.Retry(max_attempts=2, initial=op["backoff"]) if op["retry"] else None
    try:
        return await ctx.step(sid, body, compensate=undo if op["compensate"] else None, retry=retry)
    except durably.StepError as exc:
        return f"error: {exc.error_type}"


async def _switch(ctx: durably.Context, tracker: Tracker, op: dict[str, Any]) -> Any:
    sid = op["id"]

    def arm(label: str) -> Any:
        def run(value: int) -> str:
            tracker.ran("switch", sid)
            return f"{label}:{value}"

        return run

    return await ctx.switch(
        sid,
        op["value"],
        [
            durably.Branch("low", arm("low"), match=lambda v: v < 3),
            durably.Branch("mid", arm("mid"), match=lambda v: v < 6),
        ],
        default=durably.Branch("high", arm("high")),
    )


def _op(kind: str, draw: st.DrawFn, index: int) -> dict[str, Any]:
    sid = f"{kind}-{index}"
    if kind == "step":
        return {
            "op": "step",
            "id": sid,
            "value": draw(st.integers(0, 99)),
            "outcome": draw(st.sampled_from(["ok", "ok", "fail", "flaky"])),
            "retry": draw(st.booleans()),
            "backoff": draw(st.integers(1, 20)),
            "compensate": draw(st.booleans()),
            "undo_ok": draw(st.booleans()),
        }
    if kind == "sleep":
        return {"op": "sleep", "id": sid, "seconds": draw(st.integers(0, 60))}
    if kind == "wait":
        return {
            "op": "wait",
            "id": sid,
            "signal": draw(st.sampled_from(SIGNALS)),
            "timeout": draw(st.one_of(st.none(), st.integers(1, 60))),
        }
    if kind == "switch":
        return {"op": "switch", "id": sid, "value": draw(st.integers(0, 9))}
    if kind == "note":
        return {"op": "note", "id": draw(st.sampled_from([None, sid])), "message": sid}
    if kind == "emit":
        return {"op": "emit", "id": sid, "event": f"event-{index}"}
    if kind == "value":
        return {"op": "value", "kind": draw(st.sampled_from(["now", "random", "uuid"]))}
    if kind == "child":
        return {
            "op": "child",
            "id": sid,
            "value": draw(st.integers(0, 9)),
            "fail": draw(st.integers(0, 3)) == 0,
            "seconds": draw(st.integers(0, 30)),
        }
    if kind == "gather":
        inner = draw(st.lists(st.sampled_from(MEMBER_KINDS), min_size=1, max_size=4))
        members = [_op(k, draw, index) for k in inner]
        for position, member in enumerate(members):
            member["id"] = f"{sid}.{position}"  # unique within the program
        return {
            "op": "gather",
            "id": sid,
            "members": members,
            "limit": draw(st.one_of(st.none(), st.integers(1, 3))),
            "keep": draw(st.booleans()),
        }
    if kind == "patch":
        return {"op": "patch", "patch": f"patch-{index}"}
    if kind == "publish":
        return {"op": "publish", "id": sid}
    return {"op": kind}


KINDS = [
    "step",
    "step",
    "sleep",
    "wait",
    "wait",
    "switch",
    "note",
    "emit",
    "value",
    "rollback",
    "child",
    "gather",
    "gather",
    "patch",
    "publish",
]
#: What a gather's members are drawn from (durable calls that may overlap).
MEMBER_KINDS = ["step", "step", "sleep", "wait", "child"]


@st.composite
def programs(draw: st.DrawFn, max_ops: int = 8) -> Program:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=max_ops))
    ops = [_op(kind, draw, index) for index, kind in enumerate(kinds)]
    if draw(st.integers(0, 9)) == 0:
        ops.append({"op": "fail"})
    return ops


@st.composite
def signal_plans(
    draw: st.DrawFn, program: Program | None = None, max_signals: int = 5
) -> list[Delivery]:
    """Deliveries with unique payloads (their index), so each can be traced.

    Mostly of the signals ``program`` waits for, at times within its timers' span, so that
    most deliveries meet a wait (or race its timeout) rather than a finished execution.
    """
    ops = flat(program or [])
    waited = sorted({op["signal"] for op in ops if op["op"] == "wait"})
    span = sum(op.get("seconds") or op.get("timeout") or 0 for op in ops) or 10
    names = st.sampled_from(waited) if waited else st.sampled_from(SIGNALS)
    if waited and draw(st.integers(0, 4)) == 0:
        names = st.sampled_from(SIGNALS)  # now and then, signals nobody waits for
    count = draw(st.integers(len(waited), max_signals))
    plan: list[Delivery] = []
    for index in range(count):
        when: float | Literal["waiting"] = draw(
            st.one_of(st.just("waiting"), st.integers(0, 2 * span + 2).map(lambda s: s / 2))
        )
        plan.append((when, draw(names), index))
    return plan


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Program, list[Delivery]]:
    """A program and the signals sent to it."""
    program = draw(programs())
    return program, draw(signal_plans(program))


def flat(ops: Program) -> Program:
    """The ops of a program with each gather's members in its place."""
    return [member for op in ops for member in (op.get("members") or [op])]


def concurrent(ops: Program) -> bool:
    """Whether the program runs work beside itself, a gather or a child (its own actor),
    so that its commit count varies between runs: how the commit actor batches two
    producers' writes depends on when the worker thread finishes each transaction."""
    return any(op["op"] in ("gather", "child") for op in ops)


def racing(ops: Program) -> bool:
    """Whether two members of one gather wait for the same signal (counted): which of them
    takes a delivery must still be the same in every run, resumed or not, whether the
    delivery was buffered before they began waiting or not (``decide.taken_in_gather``)."""
    for op in ops:
        if op["op"] == "gather":
            signals = [m["signal"] for m in op["members"] if m["op"] == "wait"]
            if len(signals) != len(set(signals)):
                return True
    return False


def explicit_ids(ops: Program) -> list[int]:
    """Indexes of ops whose step id is explicit (what a code change can rename or move)."""
    return [i for i, op in enumerate(ops) if op.get("id") and op["op"] not in ("note", "patch")]
