"""Shared pieces of the boundary tests: a worker process, one-shot client processes, and
bounded waits on what the store says."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from durably.remote._wire import worker_socket_path
from durably.stores import ExecutionRecord, LmdbStore

PROCS = Path(__file__).with_name("procs.py")
T = TypeVar("T")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


class Worker:
    """A worker process over ``store``; ``reader`` reads the store from this process."""

    def __init__(self, store: Path, proc: subprocess.Popen[bytes]) -> None:
        self.store = store
        self.proc = proc
        self.socket = worker_socket_path(store)
        self.reader = LmdbStore(store, lock=False)

    def record(self, eid: str) -> ExecutionRecord:
        record = self.reader.get_execution(eid)
        assert record is not None, eid
        return record

    def until(self, what: str, condition: Callable[[], T | None], timeout: float = 20) -> T:
        """Wait until ``condition()`` is truthy and return it; fail after ``timeout`` s
        (the store has no change feed: it is read every few milliseconds)."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            assert self.proc.poll() is None, f"the worker died: {self.stderr()}"
            assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
            time.sleep(0.005)

    def status_within(self, eid: str, status: str, timeout: float) -> float:
        """Seconds until the execution has ``status`` (failing past ``timeout``)."""
        began = time.monotonic()
        self.until(f"{eid} {status}", lambda: self.record(eid).status == status, timeout)
        return time.monotonic() - began

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()[-3000:]


@contextmanager
def worker(store: Path, *, poll: float = 1.0, max_payload: int | None = None) -> Iterator[Worker]:
    extra = [] if max_payload is None else [str(max_payload)]
    with served(store, ["worker", str(store), str(poll), *extra], Worker) as w:
        yield w


W = TypeVar("W", bound=Worker)


@contextmanager
def served(store: Path, args: list[str], make: Callable[..., W]) -> Iterator[W]:
    """A ``procs.py`` worker run with ``args``, once it said ``ready``; it must still be
    alive when the block ends, then its stdin closes and it exits."""
    proc = subprocess.Popen(
        [sys.executable, str(PROCS), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
    w = make(store, proc)
    try:
        yield w
        assert proc.poll() is None, f"the worker died: {w.stderr()}"
    finally:
        w.reader.close()
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(store: Path, *args: str, timeout: float = 60) -> str:
    """Run one client process to its end (it exits right after its write); its output."""
    proc = subprocess.run(
        [sys.executable, str(PROCS), args[0], str(store), *args[1:]],
        capture_output=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.stdout.decode().strip()


def cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``durably`` command, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "durably", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )


def result_of(w: Worker, eid: str) -> Any:
    return w.record(eid).result
