"""The process the storage-damage tests run an engine in: damage to LMDB's own pages may
kill a process (a SIGBUS from a truncated file), so the tests' own process never opens
such a store (key damage it may: that changes no page's size).

Usage: python damage_child.py MODE STORE_DIR [EFFECTS IDS]

Modes:
  open STORE        open the store as its worker and close it; print one JSON line
  die STORE         start an execution whose first step kills the process (SIGKILL): its
                    record stays ``running``; print its id first
  write STORE       start executions until killed, printing ``ack ID`` once each start
                    is durable (a worker that writes while a backup is taken)
  run STORE EFFECTS IDS
                    recover an engine over STORE (virtual time), signal the executions
                    that wait for one, let every execution settle (at most 5 virtual
                    hours), start a fresh one, and print one JSON line with the outcome
                    of each execution ``make`` started (IDS: the JSON file of its ids)

A durably error prints ``{"ok": false, "type": ..., "message": ...}`` and exits 4; any
other exit (a traceback's 1, a signal's negative code) is what the tests call a crash.
``make`` (imported by the tests) writes the store the damage is done to.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import trio
import trio.testing

import durably
from durably.stores import LmdbStore

T = TypeVar("T")

#: Executions per workflow that ``make`` starts.
PER_KIND = 6
#: How long the run phase lets executions settle, in virtual seconds.
SETTLE_S = 5 * 3600


def _effects() -> Path:
    return Path(EFFECTS[0])


EFFECTS: list[str] = ["/dev/null"]


def effect(name: str) -> str:
    """A step body with a side effect: one line per run, so a re-run shows."""
    info = durably.current_step()
    assert info is not None
    with _effects().open("a") as f:
        f.write(f"{info.execution_id} {name}\n")
    return name


@durably.workflow("nap")
async def nap(ctx: durably.Context, n: int) -> int:
    await ctx.step("a", effect, "a")
    await ctx.sleep(3600, step_id="nap")
    await ctx.step("b", effect, "b")
    return n


@durably.workflow("hold")
async def hold(ctx: durably.Context, n: int) -> int:
    await ctx.step("a", effect, "a")
    got = await ctx.wait_for_signal("go", step_id="go")
    return n + int(got)


@durably.workflow("limited", timeout=7200)
async def limited(ctx: durably.Context, n: int) -> int:
    await ctx.step("a", effect, "a")
    await ctx.wait_for_signal("never", step_id="never")
    return n


@durably.workflow("done")
async def done(ctx: durably.Context, n: int) -> int:
    await ctx.step("a", effect, "a")
    return n


@durably.workflow("dies")
async def dies(ctx: durably.Context, n: int) -> int:
    await ctx.step("a", die_once)
    return n


def die_once() -> str:
    """In the ``die`` mode, the process dies in this step's body (a real crash mid-step);
    anywhere else (a resumed run, a test's own process) the step just runs."""
    if DYING[0]:
        os.kill(os.getpid(), signal.SIGKILL)
    return effect("a")


DYING = [False]


#: What ``make`` starts; ``dies`` is started by the ``die`` mode only.
MADE = [nap, hold, limited, done]
WORKFLOWS = [*MADE, dies]


async def make(store_dir: Path, effects: Path) -> dict[str, list[str]]:
    """Start ``PER_KIND`` executions of each workflow and let each reach its wait (or its
    end); returns the ids by workflow. Run under a MockClock."""
    EFFECTS[0] = str(effects)
    store = LmdbStore(store_dir, inline=True)
    try:
        async with durably.Engine(store, workflows=WORKFLOWS) as engine:
            ids = {wf.name: [await engine.start(wf, n) for n in range(PER_KIND)] for wf in MADE}
            await trio.sleep(1)
            for eid in ids["done"]:
                await engine.wait(eid)
    finally:
        store.close()
    return ids


def expected(workflow: str, n: int) -> tuple[str, Any]:
    """What a healthy execution of ``make`` ends as after the run phase."""
    if workflow == "limited":
        return "failed", None
    return "completed", n + 1 if workflow == "hold" else n


async def _run(store_dir: str, ids: dict[str, list[str]]) -> dict[str, Any]:
    store = LmdbStore(store_dir, inline=True)
    try:
        async with durably.Engine(store, workflows=WORKFLOWS) as engine:
            report = engine.last_recovery
            assert report is not None
            #: What the engine refused, clearly, for one execution: it keeps running.
            refused: dict[str, str] = {}
            for eid in ids["hold"]:
                await _told(refused, eid, engine.signal(eid, "go", 1))
            with trio.move_on_after(SETTLE_S):
                for eid in sorted({e for group in ids.values() for e in group}):
                    await _told(refused, eid, engine.wait_settled(eid))
            outcomes = {}
            for workflow, group in ids.items():
                for n, eid in enumerate(group):
                    view = await _told(refused, eid, engine.get_execution(eid))
                    outcomes[eid] = {
                        "workflow": workflow,
                        "n": n,
                        "status": view and view.status.value,
                        "result": view and view.result,
                        "error": view and (view.error or {}).get("type"),
                        "reason": view and view.reason,
                    }
            fresh: int | str
            try:
                fresh = (await engine.start_and_wait(done, 99)).data
            except durably.CorruptRecordError as exc:  # its write met the damage: refused
                fresh = str(exc)
            except durably.ExecutionFailedError as exc:
                # Started, then a later write of it met the damage: it was quarantined.
                if exc.error.get("type") != "durably.CorruptRecordError":
                    raise
                fresh = str(exc)
            return {
                "ok": True,
                "outcomes": outcomes,
                "quarantined": report.quarantined,
                "refused": refused,
                "fresh": fresh,
                "errors": ERRORS,
            }
    finally:
        store.close()


async def _told(refused: dict[str, str], eid: str, call: Awaitable[T]) -> T | None:
    """The call's result, or ``None`` with the durably error it raised noted for ``eid``."""
    try:
        return await call
    except (durably.CorruptRecordError, durably.UnknownExecutionError) as exc:
        refused[eid] = f"{type(exc).__name__}: {exc}"
        return None


async def _die(store_dir: str) -> None:
    DYING[0] = True
    async with durably.Engine(store_dir, workflows=WORKFLOWS) as engine:
        eid = await engine.start(dies, 7)
        print(json.dumps({"execution_id": eid}), flush=True)
        await engine.wait(eid)  # never returns: the step kills the process


async def _write(store_dir: str) -> None:
    """Start executions one after another, printing each id once its start is durable."""
    async with durably.Engine(store_dir, workflows=WORKFLOWS) as engine:
        n = 0
        while True:
            eid = await engine.start(done, n)
            print(f"ack {eid}", flush=True)
            n += 1
            if n % 10 == 0:
                await engine.wait(eid)


class _Errors(logging.Handler):
    """Collects what durably logs at ERROR: how the engine says what it could not do."""

    def emit(self, record: logging.LogRecord) -> None:
        ERRORS.append(record.getMessage())


ERRORS: list[str] = []


def main(argv: list[str]) -> int:
    mode, store_dir, *rest = argv
    EFFECTS[0] = rest[0] if rest else "/dev/null"
    logging.getLogger("durably").addHandler(_Errors(logging.ERROR))
    try:
        if mode == "open":
            LmdbStore(store_dir).close()
            result: dict[str, Any] = {"ok": True}
        elif mode == "run":
            ids = json.loads(Path(rest[1]).read_text())
            clock = trio.testing.MockClock(autojump_threshold=0)
            result = trio.run(_run, store_dir, ids, clock=clock)
        elif mode == "die":
            trio.run(_die, store_dir)
            return 0
        elif mode == "write":
            trio.run(_write, store_dir)
            return 0
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except durably.DurablyError as exc:
        print(json.dumps({"ok": False, "type": type(exc).__name__, "message": str(exc)}))
        return 4
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
