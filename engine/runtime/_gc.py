"""The cyclic collector's first threshold while engines run (``Engine(gc_threshold=)``).

A live execution's step allocates a few tracked objects that stay alive until its commit
is durable; with a thousand executions in flight, CPython's default first threshold
(700) collects generation 0 mid-flight over and over, promotes those objects, and the
promotions bring on the full passes that walk every live execution. A higher threshold
lets them die by reference counting first: measured on the concurrent benchmark (1,000
x 10 steps), 0.028-0.031 x raw puts at 700, 0.030-0.032 at 5,000, 0.032-0.035 at 20,000.
Cyclic garbage waits longer for its collection, a few thousand objects at most.

The collector is process-wide: the threshold is raised only if it is lower, kept while
any engine that asked runs, and put back as the host had it when the last one stops
(unless the host changed it meanwhile).
"""

from __future__ import annotations

import gc

_holders = 0
_saved: tuple[int, int, int] | None = None
_ours: tuple[int, int, int] | None = None


def hold(first: int) -> None:
    """Raise the first threshold to at least ``first`` until the matching ``release``."""
    global _holders, _saved, _ours
    _holders += 1
    current = gc.get_threshold()
    if current[0] >= first or current[0] == 0:  # higher already, or collection off
        return
    if _saved is None:
        _saved = current
    _ours = (first, current[1], current[2])
    gc.set_threshold(*_ours)


def release() -> None:
    global _holders, _saved, _ours
    _holders = max(0, _holders - 1)
    if _holders or _saved is None:
        return
    if gc.get_threshold() == _ours:  # the host's own change since is left as it is
        gc.set_threshold(*_saved)
    _saved = _ours = None
