"""Processes for the client tests: one worker, several clients, one LMDB store.

python client_procs.py worker STORE EFFECTS EXPECTED
python client_procs.py client STORE NAME COUNT
"""

from __future__ import annotations

import os
import sys

import trio

import durably

Pay = durably.Signal("pay", int)


def effect(path: str, amount: int) -> int:
    info = durably.current_step()
    assert info is not None
    with open(path, "a") as f:
        f.write(f"{info.execution_id} {os.getpid()}\n")
    return amount * 2


def make_order(effects: str) -> durably.WorkflowDefinition[str, dict[str, object]]:
    @durably.workflow("order")
    async def order(ctx: durably.Context, ref: str) -> dict[str, object]:
        amount = await ctx.wait_for_signal(Pay, step_id="pay")
        charged = await ctx.step("charge", effect, effects, amount)
        return {"ref": ref, "charged": charged}

    return order


def check_flag(path: str) -> str:
    if not os.path.exists(path):
        raise RuntimeError(f"{path} is missing")
    return "flag found"


@durably.workflow("flaky")
async def flaky(ctx: durably.Context, flag: str) -> str:
    return await ctx.step("check", check_flag, flag)


async def worker(store: str, effects: str, expected: int) -> None:
    order = make_order(effects)
    async with durably.Engine(store, workflows=[order, flaky], poll_interval=0.2) as engine:
        print("ready", flush=True)
        # The executions come from other processes: the store is the only place to look.
        while len(await engine.list_executions(status="completed", limit=None)) < expected:  # noqa: ASYNC110
            await trio.sleep(0.05)
    print("worker done", flush=True)


async def client(store: str, name: str, count: int) -> None:
    order = make_order("/nonexistent")  # clients never run steps
    async with durably.Client(store, workflows=[order]) as engine:

        async def one(i: int) -> None:
            ref = f"{name}-{i}"
            eid = await engine.start(order, ref, idempotency_key=ref)
            again = await engine.start(order, ref, idempotency_key=ref)
            assert again == eid
            outcome = await engine.signal(eid, Pay, i, dedup_key=f"pay-{ref}")
            assert outcome.accepted, outcome
            dup = await engine.signal(eid, Pay, i, dedup_key=f"pay-{ref}")
            assert not dup.accepted
            result = await engine.wait(eid, timeout=120)
            assert result == {"ref": ref, "charged": 2 * i}, result

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
    print(f"client {name} ok {count}", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "worker":
        trio.run(worker, sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        trio.run(client, sys.argv[2], sys.argv[3], int(sys.argv[4]))
