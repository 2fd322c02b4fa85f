"""Physical limits, measured on this machine in the same run as the scenarios.

Each baseline is what the hardware and the libraries allow with no engine at all: raw
LMDB synced commits (one small put per transaction, as a sequential workflow needs one
fsync per step), raw LMDB puts in large synced transactions (what group commit can reach
at best), a bare trio task switch, and raw reads of a log. A scenario's ratio is its
figure over the matching limit, so a slower or faster machine moves both alike.
"""

from __future__ import annotations

import os
import tempfile
import time

import lmdb
import orjson
import trio

#: An event about the size of a recorded step (``step.completed`` with a small result).
_VALUE = orjson.dumps(
    {
        "at": 1_700_000_000_000,
        "step_id": "step-0",
        "result": 7,
        "duration_ms": 0.01,
        "attempt": 1,
        "t": "step.completed",
    }
)


def _open(path: str) -> lmdb.Environment:
    return lmdb.open(path, map_size=1 << 30, sync=True, metasync=True, max_dbs=2)


def raw_synced_commits(n: int, workdir: str) -> float:
    """Synced LMDB commits per second, one put per transaction."""
    with tempfile.TemporaryDirectory(dir=workdir) as path:
        env = _open(path)
        try:
            started = time.perf_counter()
            for i in range(n):
                with env.begin(write=True) as txn:
                    txn.put(b"e%016d" % i, _VALUE)
            elapsed = time.perf_counter() - started
        finally:
            env.close()
    return n / elapsed


def raw_batched_puts(txns: int, workdir: str, per_txn: int = 1000) -> float:
    """LMDB puts per second in synced transactions of ``per_txn`` puts."""
    with tempfile.TemporaryDirectory(dir=workdir) as path:
        env = _open(path)
        try:
            started = time.perf_counter()
            key = 0
            for _ in range(txns):
                with env.begin(write=True) as txn:
                    for _ in range(per_txn):
                        txn.put(b"e%016d" % key, _VALUE)
                        key += 1
            elapsed = time.perf_counter() - started
        finally:
            env.close()
    return txns * per_txn / elapsed


def trio_switches(tasks: int, rounds: int) -> float:
    """Bare trio task switches per second: ``tasks`` tasks each checkpointing ``rounds`` times."""

    async def spin() -> None:
        for _ in range(rounds):
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def main() -> float:
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(spin)
        return time.perf_counter() - started

    elapsed = trio.run(main)
    return tasks * rounds / elapsed


def raw_read_log(path: str, table: str, prefix: bytes) -> tuple[int, float]:
    """Read and JSON-decode every value of ``table`` under ``prefix`` in a store's LMDB
    environment with no engine code: ``(count, seconds)``. Values carry durably's 5-byte
    frame, which is skipped, as a minimal reader must."""
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=16)
    try:
        db = env.open_db(table.encode(), create=False)
        started = time.perf_counter()
        count = 0
        with env.begin(db=db, buffers=True) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not bytes(key[: len(prefix)]) == prefix:
                        break
                    orjson.loads(bytes(value[5:]))
                    count += 1
        return count, time.perf_counter() - started
    finally:
        env.close()


def disk_of(path: str) -> dict[str, object]:
    """The filesystem and block device holding ``path`` (for the report)."""
    info: dict[str, object] = {"path": path}
    try:
        st = os.statvfs(path)
        info["free_gb"] = round(st.f_bavail * st.f_frsize / 1e9, 1)
        dev = os.stat(path).st_dev
        best = ""
        with open("/proc/mounts") as mounts:
            for line in mounts:
                device, mount, fstype = line.split()[:3]
                if path.startswith(mount) and len(mount) > len(best):
                    try:
                        if os.stat(mount).st_dev != dev:
                            continue
                    except OSError:
                        continue
                    best = mount
                    info.update(device=device, mount=mount, fs=fstype)
        device = str(info.get("device", ""))
        name = os.path.basename(device)
        for candidate in (name, name.rstrip("0123456789")):
            rot = f"/sys/block/{candidate}/queue/rotational"
            if candidate and os.path.exists(rot):
                with open(rot) as fh:
                    info["rotational"] = fh.read().strip() == "1"
                break
    except OSError:
        pass
    return info
