"""Paths that cannot hold a store, given to ``Engine`` and ``Client``: each is refused
with a durably error that names the path and what to change, and nothing is created. A
client opens only an existing store unless told to create one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio

import durably


async def open_engine(path: Any) -> None:
    async with durably.Engine(path):
        pass


async def open_client(path: Any, **options: Any) -> None:
    async with durably.Client(path, **options):
        pass


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- a client opens only an existing store ---


async def test_a_client_on_a_path_with_no_store_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "shpo.durably"
    with pytest.raises(durably.StoreNotFoundError, match="create=True") as info:
        await open_client(typo)
    assert str(typo) in str(info.value) and "typo" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)  # existing except clauses still work
    assert isinstance(info.value, durably.StoreError)
    assert not typo.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(durably.StoreNotFoundError, match=r"holds no data\.mdb"):
        await open_client(tmp_path / "empty")
    assert tree(tmp_path) == ["empty"]


async def test_a_client_told_to_create_makes_a_store_a_worker_then_serves(
    tmp_path: Path,
) -> None:
    @durably.workflow("hello")
    async def hello(ctx: durably.Context, name: str) -> str:
        return f"hello {name}"

    path = tmp_path / "new.durably"
    async with durably.Client(path, create=True) as client:
        eid = await client.start("hello", "ana")
    await open_client(path)  # it exists now: no create= needed
    async with durably.Engine(path, workflows=[hello]) as engine:
        assert await engine.wait(eid) == "hello ana"


# --- paths that cannot hold a store ---


@pytest.mark.parametrize("face", ["engine", "client"])
async def test_a_file_where_the_store_directory_should_be(tmp_path: Path, face: str) -> None:
    file = tmp_path / "store"
    file.write_text("not a store")
    opener = open_engine if face == "engine" else open_client
    with pytest.raises(durably.StorePathError, match="is a file, not a directory"):
        await opener(file)
    with pytest.raises(durably.StorePathError, match="is not a directory") as info:
        await opener(file / "inside")
    assert "create the parent first" in str(info.value) or face == "client"
    assert file.read_text() == "not a store"


async def test_an_engine_does_not_create_a_missing_parent(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "deeper" / "shop.durably"
    with pytest.raises(durably.StorePathError, match="does not exist") as info:
        await open_engine(path)
    message = str(info.value)
    assert str(tmp_path / "no-such-dir" / "deeper") in message and "typo" in message
    assert tree(tmp_path) == []
    (tmp_path / "no-such-dir" / "deeper").mkdir(parents=True)
    await open_engine(path)  # the parent exists: the store's own directory is created
    assert (path / "data.mdb").exists()


@pytest.mark.parametrize("bad", ["", "with\x00nul", 42, None])
@pytest.mark.parametrize("face", [durably.Engine, durably.Client])
def test_a_path_that_is_no_path_is_refused_at_construction(bad: Any, face: Any) -> None:
    with pytest.raises(durably.StorePathError, match="store"):
        face(bad)


# --- no permission: a real process without the rights ---

_OPEN = """
import sys, trio, durably
async def main():
    face = durably.Engine if sys.argv[1] == "engine" else durably.Client
    async with face(sys.argv[2]):
        pass
try:
    trio.run(main)
except durably.StorePathError as exc:
    print("StorePathError:", exc)
"""


def _as_other_user(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``args`` as an unprivileged user: root may write anywhere."""
    command = [sys.executable, "-c", _OPEN, *args]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("face", ["engine", "client"])
def test_no_permission_is_a_durably_error_not_a_raw_oserror(face: str) -> None:
    # Outside pytest's own 0700 directory, so that the other user can reach it.
    base = Path(tempfile.mkdtemp(prefix="durably-perm-", dir="/tmp"))
    try:
        store = base / "store"
        trio.run(open_engine, store)  # an existing store, owned by this user
        hidden = base / "hidden"
        hidden.mkdir()
        trio.run(open_engine, hidden / "store")
        readable = 0o755 if os.geteuid() == 0 else 0o555  # root: not the other user's
        for directory in (base, store):
            directory.chmod(readable)
        hidden.chmod(0o700 if os.geteuid() == 0 else 0o000)
        cases = [
            (store, "no permission to open the store directory"),
            (hidden / "store", "cannot look at the store path"),
        ]
        if face == "engine":  # a client does not create stores
            cases.append((base / "new", "no permission to create the store directory"))
        for path, phrase in cases:
            result = _as_other_user(face, str(path))
            assert "Traceback" not in result.stderr, result.stderr
            assert result.stdout.startswith("StorePathError:"), result.stdout + result.stderr
            assert phrase in result.stdout and str(path) in result.stdout
            assert "permission" in result.stdout  # and it says what to change
        assert not (base / "new").exists()
    finally:
        for directory in (base, base / "store", base / "hidden"):
            directory.chmod(0o755)
        shutil.rmtree(base)
