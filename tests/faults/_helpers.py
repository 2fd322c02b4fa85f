"""Shared pieces of the fault tests: an engine over an inline LmdbStore, and raw log reads."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

import durably
from durably.stores import LmdbStore

WORKER = Path(__file__).with_name("fault_worker.py")


@asynccontextmanager
async def lmdb_engine(
    path: Path, workflows: Sequence[durably.WorkflowDefinition[Any, Any]], **options: Any
) -> AsyncIterator[durably.Engine]:
    """An engine over an inline LmdbStore at ``path`` (inline: tests run on a MockClock)."""
    store = LmdbStore(path, inline=True, **options.pop("store_options", {}))
    try:
        async with durably.Engine(store, workflows=workflows, **options) as engine:
            yield engine
    finally:
        store.close()


def events(path: Path, execution_id: str) -> list[dict[str, Any]]:
    """The execution's decoded log, read from a read-only store."""
    store = LmdbStore(path, readonly=True)
    try:
        return [orjson.loads(raw) for raw in store.read_events(execution_id)]
    finally:
        store.close()


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``fault_worker.py`` with ``args`` to its end (it may SIGKILL itself)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(WORKER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
