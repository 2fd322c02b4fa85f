"""Processes for the boundary tests: one worker, clients that write and exit at once.

python procs.py worker STORE POLL_INTERVAL [MAX_PAYLOAD_BYTES]
    the store's worker; prints "ready", runs until its stdin closes
python procs.py start STORE WORKFLOW INPUT_JSON
    starts one execution, prints its id, exits at once
python procs.py signal STORE EID NAME PAYLOAD_JSON
    signals one execution, exits at once
python procs.py cancel STORE EID
    requests a cancellation, exits at once
python procs.py signal-many STORE EIDS_FILE
    opens a client, prints "open", waits for a line on stdin, then signals "go" to every
    execution in EIDS_FILE (one id a line), prints "sent", exits at once
python procs.py queue-worker STORE POLL_INTERVAL QUEUES_JSON
    a worker declaring the queues {name: declaration} of QUEUES_JSON (as the store keeps
    them); prints "ready", then answers each line "stats NAME" on stdin with the worker's
    own ``engine.queue_stats(NAME)`` as JSON, until its stdin closes
python procs.py enqueue STORE QUEUE WORKFLOW INPUT_JSON [KWARGS_JSON]
    enqueues one execution, prints its id (or "duplicate EXISTING_ID"), exits at once
python procs.py debounce STORE WORKFLOW INPUT_JSON KEY PERIOD
    debounces one call, prints the execution's id, exits at once
python procs.py queue-stats STORE QUEUE
    prints the client's ``queue_stats(QUEUE)`` as JSON, exits at once
python procs.py on-go STORE ACTION ARGS...
    for the queue actions above: opens a client, prints "open", waits for a line on
    stdin, then does ACTION (so that several processes can act at one moment)

Workflows: "quick" returns its input; "wait_go" waits for the signal "go" and returns its
payload; "long" sleeps an hour; "blocker" runs a step that blocks the event loop for 3 s
(``time.sleep`` on the loop, as a careless step does), writing INPUT.start and INPUT.end
around it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import trio

import durably

BLOCK_SECONDS = 3.0


def block(marker: str) -> str:
    Path(marker + ".start").write_text("blocking")
    time.sleep(BLOCK_SECONDS)  # on the event loop: nothing else of the worker runs
    Path(marker + ".end").write_text("done")
    return "unblocked"


@durably.workflow("quick")
async def quick(ctx: durably.Context, value: Any) -> Any:
    return await ctx.step("echo", lambda: value)


@durably.workflow("wait_go")
async def wait_go(ctx: durably.Context, _: Any) -> Any:
    payload = await ctx.wait_for_signal("go", step_id="go")
    return await ctx.step("after", lambda: payload)


@durably.workflow("long")
async def long(ctx: durably.Context, _: Any) -> str:
    await ctx.sleep(3600, step_id="nap")
    return "woke"


@durably.workflow("blocker")
async def blocker(ctx: durably.Context, marker: str) -> str:
    return await ctx.step("block", block, marker)


@durably.workflow("basket")
async def basket(ctx: durably.Context, owner: str) -> list[Any]:
    """Collects ``add`` signals, publishing the count after each, until ``None``."""
    items: list[Any] = []
    while True:
        item = await ctx.wait_for_signal("add", step_id=f"add-{len(items)}")
        if item is None:
            return [owner, *items]
        items.append(item)
        await ctx.publish("count", len(items), step_id=f"count-{len(items)}")


WORKFLOWS = [quick, wait_go, long, blocker, basket]


async def worker(store: str, poll: float, max_payload: int) -> None:
    async with durably.Engine(
        store, workflows=WORKFLOWS, poll_interval=poll, max_payload_bytes=max_payload
    ):
        print("ready", flush=True)
        # Until the test closes stdin (or kills this process).
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
    print("worker done", flush=True)


async def client(store: str, action: str, args: list[str]) -> None:
    async with durably.Client(store) as c:
        if action == "start":
            print(await c.start(args[0], json.loads(args[1])), flush=True)
        elif action == "signal":
            outcome = await c.signal(args[0], args[1], json.loads(args[2]))
            print(outcome.delivery.value, flush=True)
        elif action == "signal-with-start":
            receipt = await c.signal_with_start(
                "basket", args[0], "add", json.loads(args[1]), idempotency_key=args[0]
            )
            print(receipt.execution_id, flush=True)
        elif action == "cancel":
            await c.request_cancel(args[0], reason="from a client that exits")
            print("requested", flush=True)
        elif action == "signal-many":
            eids = args[0].split()
            print("open", flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            for n, eid in enumerate(eids):
                await c.signal(eid, "go", n)
            print("sent", flush=True)
        else:
            raise SystemExit(f"unknown action {action!r}")
    # Leaving the client at once: nothing of the above may depend on a task living on.


async def queue_worker(store: str, poll: float, queues: dict[str, Any]) -> None:
    declared = [durably.Queue.from_data(name, data) for name, data in queues.items()]
    async with durably.Engine(
        store, workflows=WORKFLOWS, queues=declared, poll_interval=poll
    ) as engine:
        print("ready", flush=True)
        while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
            command, name = line.split()
            assert command == "stats", line
            print(json.dumps(attrs.asdict(await engine.queue_stats(name))), flush=True)
    print("worker done", flush=True)


QUEUE_ACTIONS = ("enqueue", "debounce", "queue-stats")


async def queue_client(store: str, action: str, args: list[str], on_go: bool) -> None:
    async with durably.Client(store) as c:
        if on_go:
            print("open", flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
        if action == "enqueue":
            kwargs = json.loads(args[3]) if len(args) > 3 else {}
            try:
                eid = await c.enqueue(args[0], args[1], json.loads(args[2]), **kwargs)
            except durably.DuplicateEnqueueError as error:
                print(f"duplicate {error.existing}", flush=True)
            else:
                print(eid, flush=True)
        elif action == "debounce":
            period = float(args[3])
            eid = await c.debounce(args[0], json.loads(args[1]), key=args[2], period=period)
            print(eid, flush=True)
        elif action == "queue-stats":
            print(json.dumps(attrs.asdict(await c.queue_stats(args[0]))), flush=True)
        else:
            raise SystemExit(f"unknown queue action {action!r}")


if __name__ == "__main__":
    mode, store_dir, *rest = sys.argv[1:]
    if mode == "queue-worker":
        trio.run(queue_worker, store_dir, float(rest[0]), json.loads(rest[1]))
    elif mode in QUEUE_ACTIONS:
        trio.run(queue_client, store_dir, mode, rest, False)
    elif mode == "on-go":
        trio.run(queue_client, store_dir, rest[0], rest[1:], True)
    elif mode == "worker":
        limit = int(rest[1]) if len(rest) > 1 else 16 * 1024 * 1024
        trio.run(worker, store_dir, float(rest[0]), limit)
    elif mode == "signal-many":
        trio.run(client, store_dir, mode, [Path(rest[0]).read_text()])
    else:
        trio.run(client, store_dir, mode, rest)
