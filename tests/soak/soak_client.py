"""The soak's client: starts and signals executions, then exits right after its writes.

Usage: python soak_client.py STORE_DIR FIRST COUNT

Starts ``client-FIRST`` .. ``client-(FIRST+COUNT-1)`` of the workflow "soak-signal" (with
those idempotency keys) and signals each "go" (with the same dedup key), then leaves at
once, whether or not a worker runs at that moment (the soak kills it again and again):
each write must reach a worker through the store's inbox, or through recovery.
"""

from __future__ import annotations

import sys

import trio

import durably


async def main(store_dir: str, first: int, count: int) -> None:
    async with durably.Client(store_dir) as client:
        for n in range(first, first + count):
            key = f"client-{n}"
            eid = await client.start("soak-signal", n, idempotency_key=key)
            await client.signal(eid, "go", n, dedup_key=key)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
