"""A child process for the PostgresStore crash tests: ``python pg_child.py MODE DSN``.

Every line it prints is flushed at once, so the parent knows exactly what was
acknowledged when it sends SIGKILL. Batches are ``lmdb_child.batch_ops``'s: one execution
with several events of up to 16 KiB, a meta entry and a timer, each naming the batch.

Modes:

- ``writer``: apply synced batches forever, printing ``acked N`` after batch N commits.
- ``hold``: open the store as its worker, print ``ready <pid>``, wait for stdin to close.
"""

from __future__ import annotations

import os
import sys

from lmdb_child import batch_ops  # this file's directory is first on sys.path

from durably.stores import PostgresStore


def main(mode: str, dsn: str) -> None:
    if mode == "writer":
        store = PostgresStore(dsn)
        n = store.get_meta("next") or 0
        while True:
            store.apply(batch_ops(n))
            print(f"acked {n}", flush=True)
            n += 1
    elif mode == "hold":
        store = PostgresStore(dsn)
        print(f"ready {os.getpid()}", flush=True)
        sys.stdin.read()
        store.close()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
