"""Record the golden logs of ``tests/golden/`` (run it only to add a golden log).

    python tests/golden/make_golden.py

Each case runs a workflow in virtual time until it reaches a chosen point (waiting for a
signal, sleeping, waiting to retry), snapshots the execution (record, stored event bytes,
mailbox) as JSON lines, and writes ``manifest.json``: what the golden test sends after
resuming it and what it must end with. Regenerating an existing log defeats its purpose
(it would record the new format, not the old one): add new cases, keep the old files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import orjson
import trio
import trio.testing

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import durably  # noqa: E402
from durably.testing import snapshot_execution, virtual_engine  # noqa: E402
from tests.golden import workflows  # noqa: E402


def _charge_v1(data: str, amount: int) -> workflows.Receipt:
    return workflows.Receipt(data, amount)


@durably.workflow("golden-renamed")
async def renamed_v1(ctx: durably.Context, data: str) -> str:
    """The version that recorded the golden log; today's code renamed "charge"."""
    await ctx.step("charge", _charge_v1, data, 10)
    await ctx.sleep(60, step_id="cool-off")
    return await ctx.step("ship", workflows.ship, data)


async def _until(engine: durably.Engine, eid: str, stop_when: str) -> None:
    """Until the execution's status is ``stop_when`` ("waiting:<signal>" for a signal)."""
    while True:
        execution = await engine.get_execution(eid)
        state = execution.status.value
        if execution.waiting_for is not None:
            state += f":{execution.waiting_for}"
        if state == stop_when:
            return
        await trio.sleep(1)


def _scrub(raw: bytes) -> bytes:
    """Recorded tracebacks name this machine's paths: keep their type and message only."""
    event = orjson.loads(raw)
    if isinstance(event.get("error"), dict):
        event["error"]["traceback"] = "(traceback removed from the golden log)"
    return orjson.dumps(event)


async def record(
    name: str,
    workflow: durably.WorkflowDefinition[Any, Any],
    input: Any,
    *,
    before: list[tuple[float, str, Any]],
    stop_when: str,
    then: list[tuple[str, Any]],
    expect: dict[str, Any],
) -> dict[str, Any]:
    async with virtual_engine(workflow) as engine:
        eid = await engine.start(workflow, input)
        for delay, signal, payload in before:
            await trio.sleep(delay)
            await engine.signal(eid, signal, payload)
        await _until(engine, eid, stop_when)
        snapshot = snapshot_execution(engine.store, eid)
    snapshot = attrs.evolve(snapshot, events=[_scrub(raw) for raw in snapshot.events])
    (HERE / f"{name}.jsonl").write_text(snapshot.to_jsonl())
    return {"log": f"{name}.jsonl", "signals": then, **expect}


async def main() -> None:
    order_input = {"order": "A-17", "amount": 250}
    cases = [
        await record(
            "order-waiting",
            workflows.order,
            order_input,
            before=[(61, "approve", {"by": "ops"})],
            stop_when="waiting:finish",
            then=[("finish", "ship")],
            expect={"status": "completed", "runs_after_resume": ["ship:1"]},
        ),
        await record(
            "order-rollback",
            workflows.order,
            order_input,
            before=[(61, "approve", {"by": "ops"})],
            stop_when="waiting:finish",
            then=[("finish", "cancel")],
            expect={"status": "completed", "runs_after_resume": ["refund:0"]},
        ),
        await record(
            "retry-backoff",
            workflows.retrying,
            "B-2",
            before=[],
            stop_when="retrying",
            then=[],
            expect={"status": "completed", "runs_after_resume": ["flaky:2"]},
        ),
        await record(
            "sleeping",
            workflows.sleeping,
            "C-3",
            before=[],
            stop_when="sleeping",
            then=[],
            expect={"status": "completed", "runs_after_resume": ["ship:1"]},
        ),
        await record(
            "renamed-step",
            renamed_v1,
            "D-4",
            before=[],
            stop_when="sleeping",
            then=[],
            expect={"status": "failed", "error": "NonDeterminismError", "runs_after_resume": []},
        ),
    ]
    # The expected results are those of uninterrupted runs of the same code and input.
    for case in cases:
        if case["status"] == "completed":
            case["result"] = await _uninterrupted(case)
    (HERE / "manifest.json").write_text(json.dumps(cases, indent=2) + "\n")


async def _uninterrupted(case: dict[str, Any]) -> Any:
    from durably.testing import ExecutionSnapshot, restore_execution

    snapshot = ExecutionSnapshot.from_jsonl((HERE / case["log"]).read_text())
    store = durably.stores.MemoryStore()
    eid = restore_execution(store, snapshot)
    async with virtual_engine(*workflows.WORKFLOWS, store=store) as engine:
        for signal, payload in case["signals"]:
            await engine.signal(eid, signal, payload)
        return await engine.wait(eid)


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    print(f"golden logs written to {HERE}")
