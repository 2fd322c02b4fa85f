"""The store's worker lock: one ``flock`` on ``worker.lock`` in the store directory.

The worker takes it for its whole life (``LmdbStore(lock=True)``); a client with no worker
running takes it for the moment it writes on the worker's behalf. The kernel frees an
``flock`` when its holder dies, even by ``SIGKILL``, so a restarted worker never waits for
a stale lock. The holder writes its pid into the file for the refusal's message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "worker.lock"


def try_lock(directory: Path, shared: bool = False) -> IO[str] | None:
    """Take the lock of the store at ``directory``, or None if someone holds it.
    ``shared``: a worker of many, which holds it beside the others of many (never beside
    the one worker of a store, nor a client acting for it).

    Close the returned file to release the lock.
    """
    # Owner-only, like the rest of the store's files.
    fd = os.open(Path(directory) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    handle = os.fdopen(fd, "a+")
    try:
        fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    if shared:
        return handle  # the pid written is the one worker's, for its refusals
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def holder(directory: Path) -> str:
    """The pid the lock's holder wrote, for a message ("unknown" if none is readable)."""
    try:
        return (Path(directory) / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"
