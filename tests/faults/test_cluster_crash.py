"""Many workers of one store under SIGKILL and SIGSTOP: the cluster soak, run short.

``tests/soak/cluster_soak.py`` runs 3 worker processes (``many_workers=True``) over one
store and, again and again, SIGKILLs one at random (and starts another) or SIGSTOPs it
for longer than its lease (its shards are taken over) and then SIGCONTs it, while client
processes start and signal executions and exit right after their writes. Its checks, on
the store's logs and an fsynced ledger written by the steps: every execution completed
once; no acknowledged result was lost; no recorded step ran again; no writer whose lease
was taken over had a write kept (fencing), and no (shard, epoch) had two workers. It
exits 1 on any anomaly; its output (the figures and the anomalies) is shown on failure.

Here it runs about 20 s of faults on LMDB, and the same on PostgreSQL (a fresh database
from ``postgres_dsn``; skipped without PostgreSQL). The long runs and their figures are
in docs/reliability.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "soak" / "cluster_soak.py"
SHORT = ["--seconds", "20", "--executions", "200", "--lease", "2.0", "--settle", "90"]


def _soak(tmp_path: Path, *store: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(SOAK), *store, *SHORT, "--root", str(tmp_path / "soak")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (
        f"cluster soak exited {proc.returncode} (ledger and worker logs in "
        f"{tmp_path / 'soak'}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    )


@pytest.mark.slow
def test_three_workers_on_lmdb_survive_sigkill_and_sigstop(tmp_path: Path) -> None:
    _soak(tmp_path, "--store", "lmdb")


@pytest.mark.slow
def test_three_workers_on_postgres_survive_sigkill_and_sigstop(
    tmp_path: Path, postgres_dsn: str
) -> None:
    _soak(tmp_path, "--store", "postgres", "--dsn", postgres_dsn)
