"""Resume every golden log with today's code: old executions must still finish the same.

A failure here means a change to the event format, the codec or the replay rules broke
executions that are already running in someone's store. Fix the change, do not
regenerate the log (see make_golden.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

import durably
from durably.core._events import decode_all
from durably.stores import MemoryStore
from durably.testing import ExecutionSnapshot, restore_execution, virtual_engine

from . import workflows

HERE = Path(__file__).resolve().parent
CASES: list[dict[str, Any]] = json.loads((HERE / "manifest.json").read_text())


def test_every_golden_log_is_in_the_manifest() -> None:
    assert sorted(p.name for p in HERE.glob("*.jsonl")) == sorted(c["log"] for c in CASES)
    assert any(c["status"] == "failed" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["log"] for c in CASES])
async def test_a_golden_log_resumes_to_its_recorded_outcome(
    case: dict[str, Any], autojump_clock: trio.testing.MockClock
) -> None:
    snapshot = ExecutionSnapshot.from_jsonl((HERE / case["log"]).read_text())
    decode_all(snapshot.events, snapshot.record.id)  # every stored event still reads
    store = MemoryStore()
    eid = restore_execution(store, snapshot)
    workflows.RUNS.clear()
    async with virtual_engine(*workflows.WORKFLOWS, store=store) as engine:
        for signal, payload in case["signals"]:
            outcome = await engine.signal(eid, signal, payload)
            assert outcome.accepted, outcome
        if case["status"] == "completed":
            assert await engine.wait(eid) == case["result"]
        else:
            with pytest.raises(durably.ExecutionFailedError) as info:
                await engine.wait(eid)
            assert info.value.error["type"].endswith(case["error"]), info.value.error
            assert "'charge'" in info.value.error["message"]
    # Nothing recorded ran again; only the work after the snapshot did.
    assert workflows.RUNS == case["runs_after_resume"]
    events = store.read_events(eid)
    assert events[: len(snapshot.events)] == snapshot.events  # the old history is untouched
