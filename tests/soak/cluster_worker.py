"""The cluster soak's worker: one of many workers of one store (``many_workers=True``),
run until SIGTERM, which it answers with a graceful stop (its leases released at once).

Usage: python cluster_worker.py STORE LEDGER LEASE_SECONDS

STORE is an LMDB directory or a PostgreSQL DSN. Every step body appends a line to LEDGER
(``O_APPEND``, fsynced, so the order of the lines is the order of the writes across all
processes) and returns a fresh nonce, its recorded result::

    run EID STEP NONCE WORKER EPOCH PID TIME

Right after ``ctx.step`` returns (the result is durable: the commit was acknowledged,
or the step was replayed from the log), the workflow appends::

    ack EID STEP NONCE WORKER EPOCH PID TIME live|replay

``live`` when the nonce is one this process's step body made and this is its first
return (the commit of this process's run was acknowledged), ``replay`` otherwise.
EPOCH is this worker's lease epoch on the execution's shard at that moment (``-`` if it
holds none), read from the engine, so that the checker can tell which writer was the
shard's owner at which time (``cluster_soak.py``).
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import sys
import time

import trio

import durably
from durably.core._shards import shard_of

STEPS = 4
#: The engine of this process, read by the step bodies and the workflow for the lease.
ENGINE: durably.Engine | None = None
#: Nonces this process's step bodies returned and no ``ctx.step`` has returned yet.
MINE: set[str] = set()
_LEDGER = -1


def _line(kind: str, eid: str, step: str, nonce: str, tail: str = "") -> None:
    assert ENGINE is not None and ENGINE._ownership is not None
    own = ENGINE._ownership
    epoch = own.held.get(shard_of(eid))
    at = f"{time.time():.6f}"
    fields = [kind, eid, step, nonce, own.worker, "-" if epoch is None else str(epoch)]
    fields += [str(os.getpid()), at]
    if tail:
        fields.append(tail)
    os.write(_LEDGER, (" ".join(fields) + "\n").encode())  # one write: one whole line
    os.fsync(_LEDGER)


async def effect(step: str) -> str:
    info = durably.current_step()
    assert info is not None
    await trio.sleep(random.uniform(0.0, 0.03))  # the step's I/O
    nonce = secrets.token_hex(8)
    _line("run", info.execution_id, step, nonce)  # the side effect
    MINE.add(nonce)
    await trio.sleep(random.uniform(0.0, 0.01))  # the reply: a fault here re-runs the step
    return nonce


@durably.workflow("cluster")
async def cluster(ctx: durably.Context, n: int) -> list[str]:
    eid = ctx.execution_id
    nonces = []
    for i in range(STEPS):
        step = f"s{i}"
        nonce = await ctx.step(step, effect, step)
        live = nonce in MINE
        MINE.discard(nonce)
        _line("ack", eid, step, nonce, "live" if live else "replay")
        nonces.append(nonce)
        if i == 0:
            await ctx.wait_for_signal("go", step_id="go")  # sent by a later client
        elif i == 1:
            await ctx.sleep(0.2 + (n % 8) * 0.2, step_id="pause")  # a timer across takeovers
    return nonces


async def main(store: str, ledger: str, lease: float) -> None:
    global ENGINE, _LEDGER
    _LEDGER = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    # Kills land often, also while executions replay: the crash-loop guard is tested on
    # its own and must not dead-letter anything here.
    engine = durably.Engine(
        store,
        workflows=[cluster],
        many_workers=True,
        lease_seconds=lease,
        max_recovery_attempts=1000,
    )
    ENGINE = engine  # before the start: recovery runs step bodies inside __aenter__
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with engine:
            assert engine._ownership is not None
            log = logging.getLogger("durably")
            log.info("soak: worker %s ready", engine._ownership.worker)
            async for _ in signals:
                log.info("soak: worker %s stopping", engine._ownership.worker)
                break
    logging.getLogger("durably").info("soak: stopped")
    os.close(_LEDGER)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    trio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]))
