"""engine.describe: every node kind, JSON, Mermaid, defaults; no step body runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

import durably

ran: list[str] = []


async def reserve(order: dict[str, Any]) -> str:
    ran.append("reserve")
    return "r-1"


async def release(reservation: str) -> None:
    ran.append("release")


def is_paid(status: str) -> bool:
    ran.append("match")
    return status == "paid"


Approved = durably.Signal("approved", bool)


@durably.workflow("order", defaults={"id": "o-1", "status": "paid"})
async def order(ctx: durably.Context, data: dict[str, Any]) -> str:
    await ctx.step(
        "reserve", reserve, data, compensate=release, retry=durably.Retry(max_attempts=2)
    )
    await ctx.note(f"reserved for {data['id']}")
    await ctx.sleep(60, step_id="cool-off")
    await ctx.sleep(until=datetime(2031, 1, 1, tzinfo=UTC), step_id="new-year")
    await ctx.wait_for_signal(Approved, timeout=3600, step_id="approval")
    route = await ctx.switch(
        "route",
        data["status"],
        [
            durably.Branch("ship", match=is_paid, run=lambda s: "shipped"),
            durably.Branch("refund", match=lambda s: s == "void", run=lambda s: "refunded"),
        ],
        default=durably.Branch("review", run=lambda s: "manual"),
    )
    await ctx.emit("order.done", {"route": route}, step_id="done")
    await ctx.step("receipt", reserve, data, timeout=5)
    return "ok"


EXPECTED_NODES = [
    {
        "kind": "step",
        "step_id": "reserve",
        "has_compensation": True,
        "has_retry": True,
        "timeout": None,
    },
    {"kind": "note", "step_id": "__note:1", "message": "reserved for o-1"},
    {"kind": "sleep", "step_id": "cool-off", "seconds": 60, "until": None},
    {
        "kind": "sleep",
        "step_id": "new-year",
        "seconds": None,
        "until": "2031-01-01T00:00:00+00:00",
    },
    {"kind": "wait_for_signal", "step_id": "approval", "signal": "approved", "timeout": 3600},
    {"kind": "switch", "step_id": "route", "branches": ["ship", "refund"], "default": "review"},
    {"kind": "emit", "step_id": "done", "event": "order.done"},
    {
        "kind": "step",
        "step_id": "receipt",
        "has_compensation": False,
        "has_retry": False,
        "timeout": 5,
    },
]

EXPECTED_MERMAID = """\
flowchart TD
    start(["order"])
    n1["step reserve (undo, retry)"]
    start --> n1
    n2>"note: reserved for o-1"]
    n1 --> n2
    n3(["sleep 60 s"])
    n2 --> n3
    n4(["sleep until 2031-01-01T00:00:00+00:00"])
    n3 --> n4
    n5(["wait for approved, timeout 3600 s"])
    n4 --> n5
    n6{"switch route"}
    n5 --> n6
    n6b1["ship"]
    n6 -->|"ship"| n6b1
    n6b2["refund"]
    n6 -->|"refund"| n6b2
    n6b3["review"]
    n6 -->|"review (default)"| n6b3
    n7>"emit order.done"]
    n6b1 --> n7
    n6b2 --> n7
    n6b3 --> n7
    n8["step receipt"]
    n7 --> n8
    stop(["end"])
    n8 --> stop
"""


async def test_describe_records_every_node_kind_and_runs_nothing(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    ran.clear()
    async with durably.Engine(store_factory(), workflows=[order], clock=clock) as engine:
        shape = await engine.describe(order)
        by_name = await engine.describe("order", {"id": "o-9", "status": "void"})
        assert await engine.list_executions() == []  # nothing was started
    assert ran == []
    assert isinstance(shape, durably.FlowShape)
    assert shape.stopped is None
    assert [n.to_dict() for n in shape.nodes] == EXPECTED_NODES
    assert json.loads(shape.to_json()) == {
        "workflow": "order",
        "nodes": EXPECTED_NODES,
        "stopped": None,
    }
    assert shape.to_mermaid() == EXPECTED_MERMAID
    # An explicit input wins over the defaults.
    assert by_name.nodes[1].message == "reserved for o-9"


async def test_describe_stops_where_code_needs_a_step_result(
    autojump_clock: Any, store_factory: Any, clock: durably.Clock
) -> None:
    @durably.workflow("needs-result")
    async def needs(ctx: durably.Context, data: Any) -> None:
        reservation = await ctx.step("reserve", reserve, data)
        await ctx.emit("reserved", reservation.upper(), step_id="announce")

    async with durably.Engine(store_factory(), workflows=[needs], clock=clock) as engine:
        shape = await engine.describe(needs)
        with pytest.raises(durably.UnknownWorkflowError):
            await engine.describe("nope")
        unregistered = await engine.describe(order)  # a definition needs no registration
        assert len(unregistered.nodes) == len(EXPECTED_NODES)
    assert [n.step_id for n in shape.nodes] == ["reserve"]
    assert shape.stopped is not None and "AttributeError" in shape.stopped
    assert shape.to_mermaid().endswith("n1 --> stopped\n")
