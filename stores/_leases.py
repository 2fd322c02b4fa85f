"""The store's side of many workers: shard leases and worker entries (``core/_shards.py``);
one layout for every store, like ``_layout.py``.

Tables (integers big-endian)::

    leases   shard:u16   -> framed epoch:u64 expires_ms:u64 worker (UTF-8)
    workers  worker id   -> framed expires_ms:u64

Rules of this module:

- A lease is the worker's while it renews it; past its expiry any worker may claim it,
  and a claim raises the epoch. ``Fence`` compares owner *and* epoch, so a worker whose
  lease was taken over can never write again under it, while a lease that merely ran
  out with no one taking it is still safely its owner's (nobody else wrote).
- Time decides only who may claim, never whose write is kept: every check happens in
  the writing transaction, and writers are serialised by the store.
- A damaged lease row is free: its next owner writes its own name, which a former
  owner's fence never matches. A damaged worker entry counts as expired.
"""

from __future__ import annotations

import struct

from ..core._errors import CorruptRecordError, LeaseLostError
from ..core._records import Fence, Heartbeat, LeaseInfo, Leases
from ..core._shards import SHARDS, fair_share
from ._codec import frame, unframe
from ._txn import Txn

_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_LEASE = struct.Struct(">QQ")
TABLES = ("leases", "workers")


def lease_key(shard: int) -> bytes:
    return _U16.pack(shard)


def _read_lease(txn: Txn, shard: int, now_ms: int = 0) -> tuple[int, int, str] | None:
    """``(epoch, expires_ms, worker)`` of the shard's lease; None if never held. A damaged
    one reads as free, owned by nobody, at epoch ``now_ms``: its lost epoch cannot have
    counted past the milliseconds elapsed since 1970."""
    raw = txn.get("leases", lease_key(shard))
    if raw is None:
        return None
    try:
        body = unframe(raw, f"the lease of shard {shard}")
    except CorruptRecordError:
        return now_ms, 0, ""
    if len(body) < _LEASE.size:
        return now_ms, 0, ""
    epoch, expires = _LEASE.unpack_from(body)
    return epoch, expires, body[_LEASE.size :].decode(errors="replace")


def _write_lease(txn: Txn, shard: int, epoch: int, expires_ms: int, worker: str) -> None:
    txn.put("leases", lease_key(shard), frame(_LEASE.pack(epoch, expires_ms) + worker.encode()))


def _live_workers(txn: Txn, now_ms: int, lease_ms: int) -> int:
    """Count the live workers; forget those gone for more than a lease period."""
    live, stale = 0, []
    for key, raw in txn.scan("workers", b"", b""):
        try:
            body = unframe(raw, "a worker entry")
            expires = _U64.unpack_from(body)[0] if len(body) >= _U64.size else 0
        except CorruptRecordError:
            expires = 0
        if expires >= now_ms:
            live += 1
        elif expires + lease_ms < now_ms:
            stale.append(key)
    for key in stale:
        txn.delete("workers", key)
    return live


def heartbeat(txn: Txn, op: Heartbeat) -> Leases:
    me, now, expires = op.worker, op.now_ms, op.now_ms + op.lease_ms
    key = me.encode()
    if op.leaving:
        txn.delete("workers", key)
    else:
        txn.put("workers", key, frame(_U64.pack(expires)))
    workers = _live_workers(txn, now, op.lease_ms)
    held: dict[int, int] = {}
    free: list[tuple[int, int]] = []
    for shard in range(SHARDS):
        lease = _read_lease(txn, shard, now)
        if lease is not None and lease[2] == me:
            if op.leaving or shard in op.release:
                _write_lease(txn, shard, lease[0], 0, me)  # free now, epoch kept
            else:
                _write_lease(txn, shard, lease[0], expires, me)
                held[shard] = lease[0]
        elif lease is None or lease[1] < now:  # never held, released, expired, damaged
            free.append((shard, 0 if lease is None else lease[0]))
    if op.claim and not op.leaving:
        room = fair_share(workers) - len(held)
        for shard, epoch in free[: max(room, 0)]:
            if shard in op.release:
                continue
            _write_lease(txn, shard, epoch + 1, expires, me)
            held[shard] = epoch + 1
    return Leases(held, workers)


def holds(txn: Txn, shard: int, worker: str, epoch: int) -> bool:
    """Whether ``worker`` holds the shard's lease at ``epoch``, in this transaction."""
    lease = _read_lease(txn, shard)
    return lease is not None and lease[2] == worker and lease[0] == epoch


def fence(txn: Txn, op: Fence) -> None:
    for shard, epoch in op.leases:
        lease = _read_lease(txn, shard)
        if lease is None or lease[2] != op.worker or lease[0] != epoch:
            owner = "nobody" if lease is None else f"worker {lease[2]} (epoch {lease[0]})"
            raise LeaseLostError(
                f"worker {op.worker} no longer holds shard {shard} (epoch {epoch}); it is "
                f"held by {owner} now. Nothing of this write was kept: the execution goes "
                "on at the shard's new owner"
            )


def leases(txn: Txn) -> list[LeaseInfo]:
    """Every shard's lease, for the CLI and the dashboard (free shards left out)."""
    out = []
    for shard in range(SHARDS):
        lease = _read_lease(txn, shard)
        if lease is not None and lease[2]:
            out.append(LeaseInfo(shard, lease[2], lease[0], lease[1]))
    return out
