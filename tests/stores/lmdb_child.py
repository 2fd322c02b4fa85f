"""A child process for the LMDB tests that need a second process (locking, crashes).

Run as ``python lmdb_child.py MODE PATH``. Every line it prints is flushed at once, so
the parent knows exactly what was acknowledged when it sends SIGKILL.

Modes:

- ``hold``: open PATH as the worker, print ``ready <pid>``, wait for stdin to close.
- ``open-worker`` / ``open-client`` / ``open-readonly``: try to open PATH that way and
  print one JSON line: ``{"ok": true, "meta": ...}`` or ``{"ok": false, "type", "message"}``.
- ``writer``: append synced batches forever, printing ``acked N`` after batch N commits.
- ``creator``: create fresh stores PATH/0, PATH/1, ... forever, printing ``created N``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from durably.stores import (
    AddTimer,
    CreateExecution,
    ExecutionRecord,
    LmdbStore,
    Op,
    PutMeta,
    Timer,
)


def batch_ops(n: int) -> list[Op]:
    """Batch ``n``: one execution with ``events_in(n)`` events, a meta entry, a timer.

    Every part names ``n`` and the batch's size, so a reader can tell a complete batch
    from a partial one. Sizes vary (events up to 16 KiB) so commits span many pages.
    """
    count = events_in(n)
    events = [event_body(n, i) for i in range(count)]
    record = ExecutionRecord(
        id=f"b{n:06d}",
        workflow="crash",
        status="running",
        input={"batch": n, "events": count},
        created_ms=n,
        updated_ms=n,
    )
    return [
        CreateExecution(record, events),
        PutMeta(f"batch-{n}", count),
        AddTimer(Timer(n, record.id, "t")),
        PutMeta("next", n + 1),
    ]


def events_in(n: int) -> int:
    return n % 7 + 1


def event_body(n: int, i: int) -> bytes:
    head = f"{n}:{i}:".encode()
    return head + bytes([n % 251]) * ((n * 7919 + i * 104729) % (16 << 10))


def _open(path: str, mode: str) -> LmdbStore:
    if mode == "open-worker":
        return LmdbStore(path)
    if mode == "open-client":
        return LmdbStore(path, lock=False)
    return LmdbStore(path, readonly=True)


def main(mode: str, path: str) -> None:
    if mode == "hold":
        store = LmdbStore(path)
        print(f"ready {os.getpid()}", flush=True)
        sys.stdin.read()
        store.close()
    elif mode.startswith("open-"):
        result: dict[str, Any]
        try:
            store = _open(path, mode)
        except Exception as exc:
            result = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
        else:
            result = {"ok": True, "meta": store.get_meta("probe")}
            store.close()
        print(json.dumps(result), flush=True)
    elif mode == "writer":
        store = LmdbStore(path, map_size=256 << 10)  # small: crashes also hit map growth
        n = store.get_meta("next") or 0
        while True:
            store.apply(batch_ops(n))
            print(f"acked {n}", flush=True)
            n += 1
    elif mode == "creator":
        n = 0
        while True:
            store = LmdbStore(os.path.join(path, str(n)))
            store.close()
            print(f"created {n}", flush=True)
            n += 1
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
