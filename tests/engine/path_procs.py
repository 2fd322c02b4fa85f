"""Processes for the socket-path and start-by-name tests: one worker, one client.

python path_procs.py worker STORE COUNT   run "order" until COUNT executions completed
python path_procs.py client STORE REF     start "order" by name (no definition here),
                                          pay it, wait, print one JSON line

Both wait a minute between looks at the store (``poll_interval=60``): whatever finishes
in seconds went over the wake-up sockets.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import trio

import durably
from durably.remote._wire import client_socket_path, worker_socket_path


@durably.workflow("order")
async def order(ctx: durably.Context, ref: str) -> dict[str, object]:
    paid = await ctx.wait_for_signal("pay", step_id="pay")
    return {"ref": ref, "paid": paid}


async def worker(store: str, count: int) -> None:
    async with durably.Engine(store, workflows=[order], poll_interval=60) as engine:
        print(json.dumps({"ready": worker_socket_path(Path(store))}), flush=True)
        while len(await engine.list_executions(status="completed", limit=None)) < count:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def client(store: str, ref: str) -> None:
    started = time.monotonic()
    async with durably.Client(store, poll_interval=60) as client:  # no workflows=
        eid = await client.start("order", ref)
        outcome = await client.signal(eid, "pay", 5)
        result = await client.wait(eid, timeout=30)
    print(
        json.dumps(
            {
                "result": result,
                "delivery": outcome.delivery.value,
                "seconds": time.monotonic() - started,
                "reply_socket_dir": str(Path(client_socket_path()).parent),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        trio.run(worker, sys.argv[2], int(sys.argv[3]))
    else:
        trio.run(client, sys.argv[2], sys.argv[3])
