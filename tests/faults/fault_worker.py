"""Worker processes for the fault tests; each mode is one fault, with real SIGKILLs.

Usage: python fault_worker.py MODE STORE_DIR [ARGS...]

Modes:
  effect-crash STORE EFFECTS   a step's body does its side effect, then the process dies
                               (once) before the step's result is recorded
  record-crash STORE EFFECTS   the process dies (once) just after a step's record
  crash-loop STORE EFFECTS N   "doomed" kills the process whenever it is replayed;
                               "healthy" runs beside it (max_recovery_attempts=N)
  step-death STORE EFFECTS N HOW
                               "doomed"'s second step body kills the process every time
                               it runs (HOW: sigkill, or exit for os._exit(17)); "healthy"
                               executions run beside it, each in a step body when it dies
  group-commit STORE COUNT     many concurrent starts and steps; prints "ack KEY EID" once
                               each start is acknowledged; killed from outside
  create STORE                 create the store, run one workflow; killed from outside
  hold STORE                   hold the store as its worker until killed

Each mode prints one JSON line with what it saw when it ends normally.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

import durably
from durably.stores import LmdbStore


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def first_time(effects: str) -> bool:
    """True once per effects file: the process dies only on the first run."""
    marker = Path(effects + ".died")
    if marker.exists():
        return False
    marker.touch()
    return True


def effect_step(effects: str, die_after: bool) -> Any:
    async def charge() -> int:
        info = durably.current_step()
        assert info is not None
        with open(effects, "a") as f:  # noqa: ASYNC230 - the side effect itself
            f.write(f"{info.idempotency_key} {info.attempt} {os.getpid()}\n")
        if die_after and first_time(effects):
            die()  # after the side effect, before the step's result is recorded
        return os.getpid()

    return charge


async def effect_crash(store_dir: str, effects: str, die_in_step: bool) -> None:
    charge = effect_step(effects, die_after=die_in_step)

    async def receipt() -> str:
        return "sent"

    @durably.workflow("pay")
    async def pay(ctx: durably.Context, amount: int) -> dict[str, Any]:
        pid = await ctx.step("charge", charge)
        if not die_in_step and first_time(effects):
            die()  # the charge is recorded; the process dies before anything else
        return {"charged_by": pid, "receipt": await ctx.step("receipt", receipt)}

    async with durably.Engine(store_dir, workflows=[pay]) as engine:
        eid = await engine.start(pay, 10, idempotency_key="order-1")
        result = await engine.wait(eid)
        print(json.dumps({"execution_id": eid, "result": result}), flush=True)


async def crash_loop(store_dir: str, effects: str, attempts: int) -> None:
    async def note(name: str) -> str:
        info = durably.current_step()
        assert info is not None
        with open(effects, "a") as f:  # noqa: ASYNC230 - the side effect itself
            f.write(f"{name} {info.execution_id} {os.getpid()}\n")
        return name

    @durably.workflow("doomed")
    async def doomed(ctx: durably.Context, _: None) -> str:
        if ctx.replaying:
            die()  # this workflow's replay kills the process, every time
        await ctx.step("a", note, "doomed.a")
        await ctx.step("b", lambda: die())
        return "unreachable"

    @durably.workflow("healthy")
    async def healthy(ctx: durably.Context, _: None) -> list[str]:
        out = []
        for i in range(3):
            out.append(await ctx.step(f"h{i}", note, f"healthy.h{i}"))
            await ctx.sleep(0.05, step_id=f"pause{i}")
        return out

    engine = durably.Engine(store_dir, workflows=[healthy, doomed], max_recovery_attempts=attempts)
    async with engine:
        # Healthy executions started before and after the doomed one replay beside it.
        ids = [await engine.start(healthy, None, idempotency_key="healthy-0")]
        ids.append(await engine.start(doomed, None, idempotency_key="doomed"))
        ids += [await engine.start(healthy, None, idempotency_key=f"healthy-{i}") for i in (1, 2)]
        for eid in ids:
            await engine.wait_settled(eid)
        views = [await engine.get_execution(e) for e in ids]
        print(
            json.dumps(
                {v.idempotency_key: {"status": v.status.value, "reason": v.reason} for v in views}
            ),
            flush=True,
        )


async def step_death(store_dir: str, effects: str, attempts: int, how: str) -> None:
    async def note(name: str) -> str:
        info = durably.current_step()
        assert info is not None
        with open(effects, "a") as f:  # noqa: ASYNC230 - the side effect itself
            f.write(f"{name} {info.execution_id} {os.getpid()}\n")
        return name

    async def fatal() -> None:
        await note("doomed.b")
        if how == "exit":
            os._exit(17)  # no unwinding, no finally: like a segfault or an abort()
        die()  # like the OOM killer

    async def slow(name: str) -> str:
        await note(f"{name}.begin")
        await trio.sleep(0.5)  # long enough to be inside this body when doomed kills
        return await note(name)

    @durably.workflow("doomed")
    async def doomed(ctx: durably.Context, _: None) -> str:
        await ctx.step("a", note, "doomed.a")
        await ctx.step("b", fatal)
        return "unreachable"

    @durably.workflow("healthy")
    async def healthy(ctx: durably.Context, _: None) -> list[str]:
        return [await ctx.step(f"h{i}", slow, f"healthy.h{i}") for i in range(3)]

    engine = durably.Engine(store_dir, workflows=[healthy, doomed], max_recovery_attempts=attempts)
    async with engine:
        ids = [await engine.start(healthy, None, idempotency_key="healthy-0")]
        await trio.sleep(0.05)  # healthy-0 is inside its first step body
        ids.append(await engine.start(doomed, None, idempotency_key="doomed"))
        ids += [await engine.start(healthy, None, idempotency_key=f"healthy-{i}") for i in (1, 2)]
        for eid in ids:
            await engine.wait_settled(eid)
        views = [await engine.get_execution(e) for e in ids]
        print(
            json.dumps(
                {v.idempotency_key: {"status": v.status.value, "reason": v.reason} for v in views}
            ),
            flush=True,
        )


async def group_commit(store_dir: str, count: int) -> None:
    async def work(i: int) -> int:
        await trio.sleep(0.001 * (i % 7))
        return i

    @durably.workflow("batchy")
    async def batchy(ctx: durably.Context, n: int) -> int:
        total = 0
        for i in range(3):
            total += await ctx.step(f"s{i}", work, n + i)
        return total

    async with durably.Engine(store_dir, workflows=[batchy]) as engine:
        print("ready", flush=True)

        async def starter(first: int) -> None:
            for i in range(first, count, 20):
                key = f"k{i}"
                eid = await engine.start(batchy, i, idempotency_key=key)
                print(f"ack {key} {eid}", flush=True)

        async with trio.open_nursery() as nursery:
            for first in range(20):
                nursery.start_soon(starter, first)
        # Polling the store is the point: it says what is durable.
        while len(await engine.list_executions(status="completed", limit=None)) < count:  # noqa: ASYNC110
            await trio.sleep(0.01)
        print(json.dumps({"done": count}), flush=True)


async def create(store_dir: str) -> None:
    @durably.workflow("hello")
    async def hello(ctx: durably.Context, name: str) -> str:
        return await ctx.step("greet", lambda: f"hello {name}")

    async with durably.Engine(store_dir, workflows=[hello]) as engine:
        result = await engine.start_and_wait(hello, "store")
        print(json.dumps({"result": result.data}), flush=True)


async def hold(store_dir: str) -> None:
    store = LmdbStore(store_dir)
    async with durably.Engine(store):
        print("holding", flush=True)
        await trio.sleep_forever()


def main(argv: list[str]) -> None:
    mode, store_dir, *rest = argv
    if mode == "effect-crash":
        trio.run(effect_crash, store_dir, rest[0], True)
    elif mode == "record-crash":
        trio.run(effect_crash, store_dir, rest[0], False)
    elif mode == "crash-loop":
        trio.run(crash_loop, store_dir, rest[0], int(rest[1]))
    elif mode == "step-death":
        trio.run(step_death, store_dir, rest[0], int(rest[1]), rest[2])
    elif mode == "group-commit":
        trio.run(group_commit, store_dir, int(rest[0]))
    elif mode == "create":
        trio.run(create, store_dir)
    elif mode == "hold":
        trio.run(hold, store_dir)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
