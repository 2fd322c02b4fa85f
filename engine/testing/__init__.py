"""``durably.testing``: prove that your workflows survive a crash at any moment.

A durable workflow is only as good as its replay. :func:`check_replay` runs a workflow in
virtual time, then runs it again once per *durable boundary* (each store commit the first
run made), stopping the engine abruptly right before that commit and resuming the
execution on a fresh engine over the same store. Every resumed run must end with the same
outcome and the same recorded history as the uninterrupted one; if not, it raises
:class:`ReplayMismatch` (an ``AssertionError``) saying which boundary, which step, what was
recorded and what the code did.

Restarts happen at the same virtual instant (no downtime), so that timers and signals land
exactly as in the first run and any difference is the workflow's or the engine's doing. A
signal is delivered once the engine is idle at its instant (a timer due then has fired, the
execution has advanced as far as it can), in every run: in production a tie is a race,
here it has one answer.

``ctx.random()`` and ``ctx.uuid()`` draw from a seeded source while a check runs: the n-th
value an execution records is the same in every run, which is what lets a value that was
lost in the crash (drawn, not yet committed) be drawn again identically.

Also here: :func:`virtual_engine` (an engine on a ``MemoryStore`` for tests under a
``MockClock``), :func:`check_upgrade` (would this code change break running executions?),
execution snapshots for golden-log tests, and the Hypothesis strategy :func:`deliveries`.
The pytest fixtures live in ``durably._pytest_plugin`` (loaded automatically by pytest).
"""

from __future__ import annotations

from ..stores._checks import check_store
from ._deliveries import Delivery, deliveries
from ._env import DEFAULT_START, virtual_engine
from ._replay_check import check_replay, check_replay_async, check_upgrade, check_upgrade_async
from ._report import ReplayMismatch, ReplayReport, normalize_event
from ._snapshot import ExecutionSnapshot, restore_execution, snapshot_execution

__all__ = [
    "DEFAULT_START",
    "Delivery",
    "ExecutionSnapshot",
    "ReplayMismatch",
    "ReplayReport",
    "check_replay",
    "check_replay_async",
    "check_store",
    "check_upgrade",
    "check_upgrade_async",
    "deliveries",
    "normalize_event",
    "restore_execution",
    "snapshot_execution",
    "virtual_engine",
]
