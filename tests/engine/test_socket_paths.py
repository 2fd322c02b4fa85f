"""Socket addresses hold about 100 bytes; store paths and TMPDIR do not. The wake-up
sockets fall back to a hashed name in the temp directory, then in /tmp, each checked
against the limit: a real worker and a real client, with a 200-character TMPDIR and a
deep store path, still reach each other at once."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import durably
from durably.remote import _wire
from durably.remote._wire import (
    MAX_SOCKET_PATH,
    bind,
    client_socket_path,
    fits,
    is_fallback,
    worker_socket_path,
)

PROCS = Path(__file__).with_name("path_procs.py")


def long_dir(base: Path, length: int) -> Path:
    """A directory under ``base`` whose path is ``length`` characters long."""
    path = base / ("d" * (length - len(str(base)) - 1))
    assert len(str(path)) == length
    path.mkdir(parents=True)
    return path


def deep_store(base: Path) -> Path:
    parent = base / ("a" * 60) / ("b" * 60)
    parent.mkdir(parents=True)
    return parent / "store"


@pytest.fixture
def long_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = long_dir(tmp_path, 200)
    monkeypatch.setattr(tempfile, "tempdir", str(directory))  # what TMPDIR would give
    return directory


# --- the path functions ---


def test_a_deep_store_with_a_long_tmpdir_falls_back_to_tmp(
    tmp_path: Path, long_tmpdir: Path
) -> None:
    store = deep_store(tmp_path)
    path = worker_socket_path(store)
    assert fits(path) and path.startswith("/tmp/durably-") and path.endswith("/worker.sock")
    assert path == worker_socket_path(store)  # every process computes the same
    assert is_fallback(path)
    reply = client_socket_path()
    assert fits(reply) and os.path.dirname(reply) == "/tmp"


def test_a_short_tmpdir_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    short = tempfile.mkdtemp(dir="/tmp")  # a TMPDIR short enough for a hashed name
    try:
        monkeypatch.setattr(tempfile, "tempdir", short)
        store = deep_store(tmp_path)
        assert os.path.dirname(os.path.dirname(worker_socket_path(store))) == short
        assert os.path.dirname(client_socket_path()) == short
    finally:
        os.rmdir(short)


def test_a_short_store_keeps_its_socket_beside_it_whatever_tmpdir(long_tmpdir: Path) -> None:
    assert worker_socket_path(Path("/srv/app/store")) == "/srv/app/store/worker.sock"


def test_with_no_short_directory_the_error_says_what_to_do(
    tmp_path: Path, long_tmpdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_wire, "LAST_RESORT_DIR", str(tmp_path / "no-such-dir"))
    with pytest.raises(durably.ConfigurationError, match="Set TMPDIR to a short directory"):
        worker_socket_path(deep_store(tmp_path))
    with pytest.raises(durably.ConfigurationError, match="a client's reply socket"):
        client_socket_path()


async def test_bind_refuses_a_path_too_long_with_a_durably_error(tmp_path: Path) -> None:
    path = str(long_dir(tmp_path, 150) / "w.sock")
    with pytest.raises(durably.ConfigurationError, match=f"over the {MAX_SOCKET_PATH} bytes"):
        await bind(path)
    assert not Path(path).exists()  # noqa: ASYNC240 - a check after the call, not I/O on the loop


async def test_the_fallback_socket_binds_and_is_private(tmp_path: Path, long_tmpdir: Path) -> None:
    path = worker_socket_path(deep_store(tmp_path))
    assert _wire.private_directory(path)
    sock = await bind(path)
    try:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


# --- real processes ---


def _env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["deep", "short"])
def test_a_worker_and_a_client_with_a_200_character_tmpdir(tmp_path: Path, store_kind: str) -> None:
    tmpdir = long_dir(tmp_path, 200)
    if store_kind == "deep":
        store = deep_store(tmp_path)
        assert len(str(store / "worker.sock")) > MAX_SOCKET_PATH
    else:  # short enough for the socket beside it (removed at the end)
        store = Path(tempfile.mkdtemp(prefix="s-", dir="/tmp")) / "store"
    try:
        _worker_and_clients(store, store_kind, _env(tmpdir))
    finally:
        if store_kind == "short":
            shutil.rmtree(store.parent)


def _worker_and_clients(store: Path, store_kind: str, env: dict[str, str]) -> None:
    worker = subprocess.Popen(
        [sys.executable, str(PROCS), "worker", str(store), "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line, worker.stderr.read() if worker.stderr else b""
        socket_path = json.loads(line)["ready"]
        assert fits(socket_path)
        assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
        if store_kind == "deep":
            assert socket_path.startswith("/tmp/durably-")
        else:
            assert socket_path == str(store / "worker.sock")
        for ref in ("r1", "r2"):
            client = subprocess.run(
                [sys.executable, str(PROCS), "client", str(store), ref],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert client.returncode == 0, client.stderr[-3000:]
            assert "Traceback" not in client.stderr and "durably:" not in client.stderr
            answer = json.loads(client.stdout)
            assert answer["result"] == {"ref": ref, "paid": 5}
            assert answer["reply_socket_dir"] == "/tmp"  # TMPDIR is too long for it
            # Both sides look at the store once a minute: this was the sockets.
            assert answer["seconds"] < 20
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()[-3000:]
        assert b"durably:" not in err  # no "cannot listen" warning
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert not os.path.exists(socket_path)  # the worker removed its socket


@pytest.mark.slow
def test_the_cli_works_with_a_200_character_tmpdir(tmp_path: Path) -> None:
    tmpdir = long_dir(tmp_path, 200)
    store = deep_store(tmp_path)
    env = {**_env(tmpdir), "DURABLY_STORE": str(store)}
    created = subprocess.run(
        [sys.executable, "-c", f"import durably.stores as s; s.LmdbStore({str(store)!r}).close()"],
        env=env,
        timeout=60,
        check=True,
    )
    assert created.returncode == 0
    listed = subprocess.run(
        [sys.executable, "-m", "durably", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "no executions" in listed.stderr and "Traceback" not in listed.stderr
