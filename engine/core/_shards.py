"""Shards: how many workers share one store without two ever writing one execution.

Every execution, schedule and inbox entry belongs to one of ``SHARDS`` shards, a pure
function of its key. A worker writes only into shards it holds a lease on (a row of the
store's ``leases`` table: owner, epoch, expiry), and every such write carries the
epoch it holds (``Fence``), checked in the write's own transaction. Taking a shard over
raises its epoch, so the old owner's writes are refused from that transaction on.

Fixed, not configured: 64 shards spread evenly over up to 64 workers, and a lease
renewal touches 64 small rows at most.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import attrs

from ._records import LeaseInfo

#: Shards of every store: the unit of ownership, takeover and spreading.
SHARDS = 64
#: What separates a call token's route (the execution or schedule it concerns) from its
#: random part: the call goes to the route's owner.
ROUTE_MARK = "~"


def shard_of(key: str) -> int:
    """The shard of an execution id, or of a timer owner (``schedule:<id>``)."""
    return zlib.crc32(key.encode(errors="surrogatepass")) & (SHARDS - 1)


def inbox_shard(key: str, kind: str, call_kind: str) -> int:
    """The shard of an inbox entry: its execution's, or for a call its route's."""
    if kind == call_kind:
        route, mark, _ = key.rpartition(ROUTE_MARK)
        if mark:
            return shard_of(route)
    return shard_of(key)


def fair_share(workers: int) -> int:
    """How many shards one of ``workers`` live workers holds at most."""
    return -(-SHARDS // max(workers, 1))


@attrs.frozen
class WorkerView:
    """One worker of many as the store's leases show it (``durably workers``, the
    dashboard's workers page)."""

    worker: str
    shards: tuple[int, ...]
    #: When its earliest lease runs out (epoch ms); past it, others may take them over.
    expires_ms: int

    def live(self, now_ms: int) -> bool:
        return self.expires_ms >= now_ms


def workers_of(leases: Iterable[LeaseInfo]) -> tuple[list[WorkerView], int]:
    """The workers holding leases (by name), and how many shards are free (released,
    or never claimed)."""
    held: dict[str, list[LeaseInfo]] = {}
    for lease in leases:
        if lease.expires_ms:  # a released lease waits for a claim: free
            held.setdefault(lease.worker, []).append(lease)
    views = [
        WorkerView(name, tuple(x.shard for x in mine), min(x.expires_ms for x in mine))
        for name, mine in sorted(held.items())
    ]
    return views, SHARDS - sum(len(v.shards) for v in views)
