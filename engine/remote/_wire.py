"""The local wake-up channel between client processes and the worker of one store.

Rules of this module:

- The store is the truth; messages are only hints that make the worker react within
  milliseconds. A client writes durably first, then sends a hint. A lost hint costs
  latency, never data: the worker's recovery and its fallback poll find the work anyway.
- Unix datagram sockets: one per worker (next to the store, or under the temp directory
  when that path is too long for a socket address), one per waiting client.
- Messages are small JSON objects: ``wake``, ``signal``, ``cancel``, ``arm`` (a timer the
  worker's scheduler should know), ``watch`` (tell me when this execution finishes) and
  the worker's answer ``done``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import orjson
import trio

#: Longest path that fits a unix socket address on every platform we run on.
_MAX_SOCKET_PATH = 100


def worker_socket_path(store_path: Path) -> str:
    path = str(Path(store_path).resolve() / "worker.sock")
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(Path(store_path).resolve()).encode()).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"durably-{digest}.sock")


def client_socket_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"durably-c{os.getpid()}-{secrets.token_hex(4)}")


async def bind(path: str) -> trio.socket.SocketType:
    """A datagram socket bound at ``path`` (a stale file of a dead process is replaced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await sock.bind(path)
    return sock


async def send(sock: trio.socket.SocketType, path: str, message: dict[str, Any]) -> bool:
    """Best-effort send; False when nobody listens at ``path`` (no worker running)."""
    try:
        with trio.move_on_after(1.0):
            await sock.sendto(orjson.dumps(message), path)
            return True
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EAGAIN):
            return False
        raise
    return False  # the worker's queue stayed full for a second: it will poll


async def receive(sock: trio.socket.SocketType) -> dict[str, Any] | None:
    data = await sock.recv(65536)
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None
