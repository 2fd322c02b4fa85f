"""Damage done to real LMDB files on disk, and the child process that meets it.

Stores are made once (``made``), then copied per test. ``compacted`` copies one with
LMDB's compacting copy: it has no free pages, so every live key is in the file once and
can be found by its bytes and flipped in place, exactly as a disk would flip it (LMDB
does not re-sort a key changed under it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import trio
import trio.testing

from durably.stores import LmdbStore

CHILD = Path(__file__).with_name("damage_child.py")


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("damage_child", CHILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


def made(where: Path) -> tuple[Path, Path]:
    """A store from ``child.make`` (virtual time) and the JSON file of its ids."""
    store = where / "made"
    ids = trio.run(
        child.make,
        store,
        where / "made.effects",
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    ids_file = where / "ids.json"
    ids_file.write_text(json.dumps(ids))
    return store, ids_file


def copy(store: Path, to: Path) -> Path:
    shutil.copytree(store, to)
    return to


def compacted(store: Path, to: Path) -> Path:
    """A compacted copy of ``store`` (LMDB's own copy, as ``durably backup`` takes)."""
    source = LmdbStore(store, readonly=True)
    try:
        source.backup(to)
    finally:
        source.close()
    return to


def flip(store: Path, offset: int, bit: int) -> None:
    with open(store / "data.mdb", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def where_is(store: Path, needle: bytes) -> int:
    """The one offset of ``needle`` in the data file (a compacted copy has each key once)."""
    data = (store / "data.mdb").read_bytes()
    offset = data.find(needle)
    assert offset >= 0 and data.find(needle, offset + 1) < 0, f"{needle!r} is not in it once"
    return offset


def run_child(*args: str, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    """Run ``damage_child.py`` with ``args``; its exit code and its last JSON line."""
    done = subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    try:
        last = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        last = {}
    if done.returncode not in (0, 4):
        last = {"crash": done.returncode, "stderr": done.stderr[-3000:]}
    return done.returncode, last
