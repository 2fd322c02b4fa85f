"""Replay properties of the engine, over random programs of every primitive.

Each example runs a random program (see ``programs.py``) with random signal arrivals in
virtual time, once uninterrupted, then interrupted at durable boundaries (the engine
stopped before a commit, or the LMDB store closed and reopened from disk) and resumed.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import trio
import trio.testing
from hypothesis import assume, given, note, strategies as st

import durably
from durably.stores import LmdbStore, MemoryStore, Store
from durably.testing import (
    DEFAULT_START,
    Delivery,
    ExecutionSnapshot,
    restore_execution,
    snapshot_execution,
)
from durably.testing._run import _Observed, _Run

from .programs import (
    PLANS,
    Program,
    Tracker,
    child,
    concurrent,
    count,
    explicit_ids,
    flat,
    interpreter,
    racing,
    scenarios,
)

HORIZON = 20_000.0


def run(
    program: Program,
    plan: list[Delivery],
    *,
    cut: int | None = None,
    tracker: Tracker | None = None,
    resume_program: Program | None = None,
    open_store: Callable[[], Store] = MemoryStore,
    reopen_store: Callable[[Store], Store] = lambda s: s,
) -> _Observed:
    """One execution of ``program``, in its own trio run with its own MockClock."""
    tracker = tracker if tracker is not None else Tracker()
    workflow = interpreter(tracker)
    resume_with = None
    if resume_program is not None:
        fixed = resume_program

        # The changed code: the same workflow name, interpreting the changed program
        # whatever program the log's input holds.
        async def changed(ctx: durably.Context, _ops: Program) -> Any:
            return await workflow.fn(ctx, fixed)

        resume_with = durably.workflow("program")(changed)
    runner = _Run(
        workflow,
        program,
        plan,
        resume_with=resume_with,
        workflows=(child,),
        cut=cut,
        start=DEFAULT_START,
        horizon=HORIZON,
        seed=7,
        open_store=open_store,
        reopen_store=reopen_store,
        on_phase=tracker.on_phase,
    )
    return trio.run(runner.run, clock=trio.testing.MockClock(autojump_threshold=0))


def recorded_runs(raws: list[bytes]) -> set[tuple[str, str, int]]:
    """The (kind, id, attempt) of every body run whose outcome is in ``raws``."""
    out: set[tuple[str, str, int]] = set()
    for raw in raws:
        event = orjson.loads(raw)
        tag = event["t"]
        if tag in ("step.completed", "step.failed", "step.retrying"):
            out.add(("step", event["step_id"], event["attempt"]))
        elif tag == "switch":
            out.add(("switch", event["step_id"], 1))
        elif tag.startswith("compensation."):
            out.add(("undo", event["step_id"].removeprefix("rollback:"), 1))
    return out


def check_bodies_ran_once(observed: _Observed, tracker: Tracker) -> None:
    """Property 2: a body whose outcome was recorded before the crash never runs again;
    every recorded outcome comes from exactly one run after the last crash before it."""
    durable = recorded_runs(observed.durable_at_cut)
    final = recorded_runs(observed.raw_history)
    by_phase = Counter(
        (phase, kind, ident, attempt) for phase, kind, ident, attempt in tracker.runs
    )
    for (phase, kind, ident, attempt), runs in by_phase.items():
        assert runs == 1, f"{kind} {ident!r} attempt {attempt} ran {runs} times in phase {phase}"
        if phase == 2:
            assert (kind, ident, attempt) not in durable, (
                f"{kind} {ident!r} attempt {attempt} ran again although its outcome was durable"
            )
    ran = {(kind, ident, attempt) for _phase, kind, ident, attempt in tracker.runs}
    assert final <= ran, f"recorded outcomes without a run: {final - ran}"
    if not observed.tripped:
        assert ran == final, f"runs without a recorded outcome: {ran - final}"


def check_signals(observed: _Observed, plan: list[Delivery]) -> None:
    """Property 3: every accepted signal is consumed once or still buffered, never both."""
    accepted = observed.accepted
    assert len(set(accepted)) == len(accepted), f"a delivery was accepted twice: {accepted}"
    assert not set(accepted) & set(observed.rejected)
    consumed = [e["payload"] for e in observed.history if e["t"] == "signal.received"]
    seqs = [e["mailbox_seq"] for e in observed.history if e["t"] == "signal.received"]
    assert len(set(seqs)) == len(seqs), f"a mailbox entry was consumed twice: {seqs}"
    assert len(set(consumed)) == len(consumed), f"a signal was consumed twice: {consumed}"
    # A child's end is in its parent's mailbox under a reserved name: not a delivery.
    buffered = [e.payload for e in observed.mailbox if not e.signal.startswith("durably.")]
    assert not set(consumed) & set(buffered), "a consumed signal is still in the mailbox"
    assert sorted(consumed + buffered) == sorted(accepted), (
        f"accepted {sorted(accepted)}, consumed {consumed}, still buffered {buffered}"
    )
    for index in observed.rejected:  # only a finished execution refuses a signal here
        assert observed.status in ("completed", "failed", "compensation_failed"), index
    for event in observed.history:
        if event["t"] == "signal.received":
            assert plan[event["payload"]][1] == event["signal"]


def same_outcome(a: _Observed, b: _Observed) -> bool:
    # Exactly, also where members of one gather race for a signal (``racing``): which of
    # them takes a delivery is the engine's rule (``decide.taken_in_gather``), not trio's
    # scheduling order, so a resumed run must give each member the same entry.
    return (a.status, a.result, a.error, a.history, a.mailbox) == (
        b.status,
        b.result,
        b.error,
        b.history,
        b.mailbox,
    )


@given(scenarios())
def test_a_run_interrupted_at_any_boundary_resumes_identically(
    scenario: tuple[Program, list[Delivery]],
) -> None:
    program, plan = scenario
    tracker = Tracker()
    base = run(program, plan, tracker=tracker)
    note(f"uninterrupted: {base.status} {base.result} after {base.commits} commits")
    check_bodies_ran_once(base, tracker)
    check_signals(base, plan)
    assert base.unrecorded_values == 0
    count("programs")
    count("signals delivered", len(base.accepted))
    if racing(program):
        count("programs racing for a signal")
    PLANS.add(repr(plan))
    assert base.error is None or "NonDeterminism" not in base.error["type"]
    for cut in range(base.commits):
        tracker = Tracker()
        resumed = run(program, plan, cut=cut, tracker=tracker)
        # A gather's or a child's batching varies between runs, and so its commit count:
        # a run that needed fewer commits ran whole, and must still end the same.
        assert resumed.tripped or concurrent(program)
        assert same_outcome(resumed, base), (
            f"boundary {cut}: {resumed.status} {resumed.result} {resumed.error}\n"
            f"{resumed.history}\nvs\n{base.history}"
        )
        check_bodies_ran_once(resumed, tracker)
        check_signals(resumed, plan)
        assert resumed.unrecorded_values == 0
        count("boundaries resumed")


@given(scenarios(), st.data())
def test_a_store_reopened_from_disk_resumes_identically(
    scenario: tuple[Program, list[Delivery]], data: st.DataObject
) -> None:
    program, plan = scenario
    base = run(program, plan)
    cut = data.draw(st.integers(0, base.commits - 1), label="boundary")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"

        def open_store() -> Store:
            return LmdbStore(path, inline=True, map_size=1 << 22)

        def reopen(store: Store) -> Store:
            store.close()  # the process is gone; what is on disk is what was acknowledged
            return open_store()

        tracker = Tracker()
        resumed = run(
            program, plan, cut=cut, tracker=tracker, open_store=open_store, reopen_store=reopen
        )
    assert resumed.tripped or concurrent(program)
    assert same_outcome(resumed, base)
    check_bodies_ran_once(resumed, tracker)
    check_signals(resumed, plan)
    count("LMDB reopens")


@st.composite
def changes(draw: st.DrawFn, program: Program) -> tuple[str, Program, set[str]]:
    """An incompatible change of ``program``, and the step ids it touches."""
    movable = explicit_ids(program)
    kind = draw(
        st.sampled_from(
            ["rename", "remove", "reorder"] if len(movable) > 1 else ["rename", "remove"]
        )
    )
    changed = [dict(op) for op in program]
    if kind == "rename":
        i = draw(st.sampled_from(movable))
        changed[i]["id"] = changed[i]["id"] + "-v2"
        return kind, changed, {program[i]["id"]}
    if kind == "remove":
        i = draw(st.sampled_from(movable))
        del changed[i]
        return kind, changed, {program[i]["id"]}
    i, j = sorted(draw(st.lists(st.sampled_from(movable), min_size=2, max_size=2, unique=True)))
    changed[i], changed[j] = changed[j], changed[i]
    return kind, changed, {program[i]["id"], program[j]["id"]}


@given(scenarios(), st.data())
def test_an_incompatible_change_is_reported_never_replayed_wrong(
    scenario: tuple[Program, list[Delivery]], data: st.DataObject
) -> None:
    program, plan = scenario
    # A program that raises is left out here: see test_a_workflow_that_raises_before_
    # reaching its history_is_nondeterminism in test_engine_determinism.py.
    program = [op for op in program if op["op"] != "fail"]
    assume(explicit_ids(program))
    base = run(program, plan)
    kind, changed, touched = data.draw(changes(program), label="change")
    # Boundaries where the touched commands are in the durable log and the execution has
    # not finished: resuming there with the changed code must not replay wrongly.
    candidates = []
    durable: set[str] = set()
    for cut, batch in enumerate(base.batches):
        if touched & durable and not durable & {"completed", "failed", "cancelled"}:
            candidates.append(cut)
        for op in batch:
            for raw in getattr(op, "events", ()):
                event = orjson.loads(raw)
                durable.add(event.get("step_id") or event["t"])
    assume(candidates)
    cut = data.draw(st.sampled_from(candidates), label="boundary")
    resumed = run(program, plan, cut=cut, resume_program=changed)
    note(f"{kind}: {resumed.status} {resumed.error}")
    # The durable history is never rewritten: whatever happens, it is still the prefix.
    assert resumed.raw_history[: len(resumed.durable_at_cut)] == resumed.durable_at_cut
    if resumed.status in ("sleeping", "waiting", "retrying"):
        # Parked and never woken (its signal never came): nothing was replayed, and
        # nothing recorded, so nothing was replayed wrong. The error comes at its wake.
        assert resumed.raw_history == resumed.durable_at_cut
        return
    assert resumed.status == "failed", f"{kind} replayed as {resumed.status}: {resumed.result}"
    assert resumed.error is not None
    assert resumed.error["type"].endswith(".NonDeterminismError"), resumed.error
    count(f"incompatible changes reported ({kind})")


@given(scenarios(), st.data())
def test_replaying_a_log_twice_gives_identical_results(
    scenario: tuple[Program, list[Delivery]], data: st.DataObject
) -> None:
    program, plan = scenario
    # A snapshot is one execution's: a child is another execution, not in it.
    assume(not any(op["op"] == "child" for op in flat(program)))
    base = run(program, plan)
    cut = data.draw(st.integers(0, base.commits - 1), label="boundary")
    # Rebuild the log as it was at the cut in two fresh stores (through store ops), then
    # resume each: the same log must give the same history, twice.
    outcomes = []
    for _ in range(2):
        outcomes.append(_resume_snapshot(program, plan, cut))
    expected = (base.status, base.result, base.error, base.history)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:4] == expected
    count("logs replayed twice")


def _resume_snapshot(program: Program, plan: list[Delivery], cut: int) -> tuple[Any, ...]:
    def capture(store: Store) -> Store:
        records = store.list_executions()
        if not records:
            return store  # stopped before the start was committed: nothing to copy
        eid = records[0].id
        snap = snapshot_execution(store, eid)
        text = snap.to_jsonl()
        assert ExecutionSnapshot.from_jsonl(text) == snap
        fresh = MemoryStore()
        assert restore_execution(fresh, ExecutionSnapshot.from_jsonl(text)) == eid
        assert fresh.read_events(eid) == store.read_events(eid)
        assert fresh.get_execution(eid) == store.get_execution(eid)
        assert fresh.mailbox(eid) == store.mailbox(eid)
        assert fresh.due_timers(2**62) == store.due_timers(2**62)
        store.close()
        return fresh

    resumed = run(program, plan, cut=cut, reopen_store=capture)
    return (resumed.status, resumed.result, resumed.error, resumed.history, resumed.mailbox)
