"""The cluster soak's client: starts executions, signals earlier ones, exits at once.

Usage: python cluster_client.py STORE FIRST COUNT SIGNAL_FIRST SIGNAL_COUNT

Starts ``c-FIRST`` .. ``c-(FIRST+COUNT-1)`` of the workflow "cluster" (those idempotency
keys, random execution ids: they spread over the shards, so over the workers), then
sends "go" to ``c-SIGNAL_FIRST`` .. (an earlier client's executions, most of them
waiting for it by now; the same dedup key), then leaves right after its writes, whether
the workers that own them run, are stopped or are being replaced at that moment: each
write must reach its owner through the store's inbox (a hint to every worker's socket,
PostgreSQL's NOTIFY, the periodic look) or through recovery at a takeover.
"""

from __future__ import annotations

import sys

import trio

import durably


async def main(store: str, first: int, count: int, signal_first: int, signals: int) -> None:
    async with durably.Client(store) as client:
        for n in range(first, first + count):
            await client.start("cluster", n, idempotency_key=f"c-{n}")
        for n in range(signal_first, signal_first + signals):
            key = f"c-{n}"
            # The start is idempotent: the earlier client's execution (or this one, if
            # that client has not come so far yet).
            eid = await client.start("cluster", n, idempotency_key=key)
            await client.signal(eid, "go", n, dedup_key=key)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], *map(int, sys.argv[2:6]))
