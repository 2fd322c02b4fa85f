"""``durably worker --processes N``: N workers of many on one store, under one parent.

Every core of a host on one LMDB store needs several processes (a Python process uses
one core); this runs them with one command. The parent runs no engine: it starts N
``durably worker ... --many-workers`` children, passes SIGTERM and SIGINT on (each child
drains), and looks after them:

- A child that dies by a signal (SIGKILL by the OOM killer, a crash) is started again
  after a pause that doubles from 1 s up to 30 s while deaths repeat; meanwhile the other
  workers take its executions over after the lease period.
- A child that exits with an error code (bad usage, a failing module, the store refused)
  stops the group with that code: starting it again would fail the same way.
- After a stop signal, children get ``--grace`` seconds and 10 more to drain and leave;
  the ones still running are killed (their leases expire; nothing is lost). The parent
  exits 0 if every child stopped cleanly, else the highest child's code.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("durably.worker")

#: How often the parent looks at its children (a supervisor's loop, not a latency).
_TICK = 0.1
_FIRST_PAUSE, _LONGEST_PAUSE = 1.0, 30.0


class _Child:
    def __init__(self, slot: int, argv: Sequence[str]) -> None:
        self.slot = slot
        self.argv = list(argv)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pause = _FIRST_PAUSE
        self.due = 0.0  # when to start it (again)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
        log.info("worker %d of the group started (pid %d)", self.slot, self.proc.pid)


def run_group(argv: Sequence[str], processes: int, grace: float) -> int:
    """Run ``processes`` copies of the worker command ``argv`` until a stop signal;
    the group's exit code (see the module's rules)."""
    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children = [_Child(slot, argv) for slot in range(1, processes + 1)]
    code = 0
    try:
        while not stop:
            code = _look_after(children)
            if code:
                log.error("a worker of the group exited with code %d: the group stops", code)
                break
            time.sleep(_TICK)
        return max(code, _stop_all(children, grace, stop[0] if stop else signal.SIGTERM))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _look_after(children: list[_Child]) -> int:
    """Start the children that are due; an error exit's code, or 0."""
    now = time.monotonic()
    for child in children:
        if child.proc is None:
            if now >= child.due:
                child.start()
            continue
        returncode = child.proc.poll()
        if returncode is None:
            continue
        if returncode > 0:
            return returncode
        log.warning(
            "worker %d of the group (pid %d) died (%s); started again in %.0f s",
            child.slot,
            child.proc.pid,
            f"signal {-returncode}" if returncode < 0 else "exit 0",
            child.pause,
        )
        child.proc, child.due = None, now + child.pause
        child.pause = min(child.pause * 2, _LONGEST_PAUSE)
    return 0


def _stop_all(children: list[_Child], grace: float, signum: int) -> int:
    running = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
    for proc in running:
        proc.send_signal(signum)
    deadline = time.monotonic() + grace + 10.0
    code = 0
    for proc in running:
        try:
            returncode = proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            log.error("worker pid %d did not stop in time; killed", proc.pid)
            proc.kill()
            returncode = proc.wait()
        code = max(code, returncode if returncode > 0 else 0 if returncode == 0 else 1)
    return code
