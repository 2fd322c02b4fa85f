"""The local wake-up wire between client processes and the worker of one store.

Rules of this module:

- The store is the truth; a datagram only makes the other side look sooner. A client's
  write is in the store (with an inbox entry) before its hint is sent; a lost hint costs
  latency (the worker looks at the inbox every ``poll_interval`` anyway), never data.
  So a datagram carries no authority: whatever it says, the worker only looks at the
  store, and the only thing it remembers of one is a ``watch`` (where to say "done").
- Unix datagram sockets: one per worker (next to the store, or in a private directory
  under the temp directory when that path is too long for a socket address), one per
  client that waits. Owner-only (``0600``, the fallback directory ``0700``).
- Sending never blocks and never raises: a full queue or a missing listener drops the
  datagram (``send`` says False); every ``OSError`` is caught and logged.
- Reading takes at most ``MAX_DATAGRAM`` bytes; a bigger datagram is refused whole.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import trio

from ..core._errors import ConfigurationError

log = logging.getLogger("durably")

#: Longest path that fits a unix socket address on every platform we run on.
MAX_SOCKET_PATH = 100
#: The largest datagram read: hints are a few hundred bytes, nothing bigger is sent.
MAX_DATAGRAM = 4096
_FALLBACK_DIR = re.compile(r"durably-[0-9a-f]{20}")
#: Send failures that only mean "nobody listens" or "no room now": dropped quietly.
_EXPECTED = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN, errno.EAGAIN, errno.EWOULDBLOCK)


#: The last place a socket is put when neither its own place nor the temp directory
#: (``TMPDIR``) is short enough for an address: fixed, so that every process agrees.
LAST_RESORT_DIR = "/tmp"


def fits(path: str) -> bool:
    """Whether ``path`` fits a unix socket address (counted in bytes, as the kernel does)."""
    return len(os.fsencode(path)) <= MAX_SOCKET_PATH


def _short_dirs() -> list[str]:
    """Where a socket may go when its own place is too long: the temp directory, then
    ``/tmp`` if this user may write there."""
    dirs = [tempfile.gettempdir()]
    last = LAST_RESORT_DIR
    if last not in dirs and os.path.isdir(last) and os.access(last, os.W_OK | os.X_OK):
        dirs.append(last)
    return dirs


def _in_short_dir(name: str, what: str) -> str:
    for directory in _short_dirs():
        path = os.path.join(directory, name)
        if fits(path):
            return path
    raise ConfigurationError(
        f"no place for {what} fits a unix socket address ({MAX_SOCKET_PATH} bytes): the "
        f"temp directory {tempfile.gettempdir()!r} is too long and {LAST_RESORT_DIR} is "
        "not writable. Set TMPDIR to a short directory (the same for the worker and its "
        "clients)"
    )


def worker_socket_path(store_path: Path, many: bool = False) -> str:
    """The worker's socket: ``worker.sock`` in the store directory when the address fits,
    else ``worker.sock`` in a private ``durably-<hash>`` directory of the temp directory,
    or of ``/tmp`` when the temp directory is too long too. Every process computes the
    same path from the store's path (and ``TMPDIR``): that is how clients find it. A
    worker of many (``many``) binds ``worker-<pid>.sock`` beside it: a client hints
    every socket there (``siblings``)."""
    resolved = str(Path(store_path).resolve())
    name = f"worker-{os.getpid()}.sock" if many else WORKER_SOCKET
    path = os.path.join(resolved, name)
    if fits(path):
        return path
    digest = hashlib.sha256(resolved.encode(errors="surrogateescape")).hexdigest()[:20]
    return _in_short_dir(os.path.join(f"durably-{digest}", name), "the worker socket")


WORKER_SOCKET = "worker.sock"
#: How long a listing of a store's worker sockets is reused before it is read again.
_SIBLINGS_TTL = 1.0


class Siblings:
    """The worker sockets beside ``path`` (the one worker's and those of many), listed
    at most once a second: a hint goes to each, and only the owner acts on it."""

    def __init__(self, path: str) -> None:
        self.directory = os.path.dirname(path)
        self._paths: list[str] = [path]
        self._listed = -_SIBLINGS_TTL

    def paths(self) -> list[str]:
        now = time.monotonic()
        if now - self._listed >= _SIBLINGS_TTL:
            self._listed = now
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            found = [n for n in names if n == WORKER_SOCKET or _MANY.fullmatch(n)]
            self._paths = [os.path.join(self.directory, n) for n in sorted(found)]
        return self._paths


_MANY = re.compile(r"worker-[0-9]{1,10}\.sock")


def is_fallback(path: str) -> bool:
    """Whether ``path`` is a fallback socket (in a ``durably-<hash>`` temp directory)."""
    directory = os.path.dirname(path)
    return os.path.dirname(directory) in (tempfile.gettempdir(), LAST_RESORT_DIR) and bool(
        _FALLBACK_DIR.fullmatch(os.path.basename(directory))
    )


def client_socket_path() -> str:
    """A new reply socket path for this client: in the temp directory, or ``/tmp`` when
    the temp directory is too long for a socket address."""
    name = f"durably-c{os.getpid()}-{secrets.token_hex(4)}"
    return _in_short_dir(name, "a client's reply socket")


def private_directory(path: str) -> bool:
    """Make (or check) the directory of a fallback socket: ours and ``0700``, else False.

    Another local user could create it first in a shared temp directory, to receive the
    hints or plant a socket of their own: such a directory is not used.
    """
    directory = os.path.dirname(path)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    try:
        info = os.lstat(directory)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and stat.S_IMODE(info.st_mode) & 0o077 == 0
    )


async def bind(path: str) -> trio.socket.SocketType:
    """An owner-only datagram socket bound at ``path`` (a stale file is replaced).

    A path too long for an address is refused here, with what to do, rather than by the
    kernel's bare "AF_UNIX path too long"; the path functions above never make one.
    """
    if not fits(path):
        raise ConfigurationError(
            f"the socket path {path!r} is over the {MAX_SOCKET_PATH} bytes a unix socket "
            "address holds; use worker_socket_path or client_socket_path, which fall "
            "back to a short directory"
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    # Bound here, not by trio's bind, which binds a unix path in a worker thread: that
    # leaves the loop idle, and a virtual clock (autojump) then jumps ahead while an
    # engine starts. A local bind takes microseconds.
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        raw.bind(path)
        os.chmod(path, 0o600)
    except BaseException:
        raw.close()
        raise
    await trio.lowlevel.checkpoint()
    return trio.socket.from_stdlib_socket(raw)


class Sender:
    """Sends datagrams at once, from an unbound socket of its own: never waits, never
    raises (it says whether the datagram went)."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, path: Any, message: dict[str, Any]) -> bool:
        if self._socket is None or not isinstance(path, str):
            return False
        try:
            self._socket.sendto(orjson.dumps(message), path)
        except OSError as exc:
            if exc.errno not in _EXPECTED:
                log.warning("durably: a wake-up datagram to %.120r failed: %s", path, exc)
            return False
        except (TypeError, ValueError) as exc:  # a path with NUL, an unencodable message
            log.warning("durably: a wake-up datagram to %.120r was refused: %s", path, exc)
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


async def receive(sock: trio.socket.SocketType) -> dict[str, Any] | None:
    """The next datagram as a JSON object; ``None`` for anything else (not JSON, not an
    object, bigger than ``MAX_DATAGRAM``), which the caller ignores."""
    data = await sock.recv(MAX_DATAGRAM + 1)
    if len(data) > MAX_DATAGRAM:
        log.warning("durably: a datagram over %d bytes was refused", MAX_DATAGRAM)
        return None
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None
