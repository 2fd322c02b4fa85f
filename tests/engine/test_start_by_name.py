"""Starting a workflow by name: a client without the definitions stores the input as given
(storable JSON, unchecked) and the worker checks it when it runs the execution; a worker
refuses a name it does not register, saying how to register it. (A real client process
without definitions starting a real worker's workflow: tests/engine/test_socket_paths.py.)"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import durably
from durably.stores import MemoryStore


@attrs.frozen
class Order:
    id: str
    lines: tuple[int, ...]


@durably.workflow("order")
async def order(ctx: durably.Context, data: Order) -> dict[str, Any]:
    return {"id": data.id, "total": sum(data.lines), "lines": type(data.lines).__name__}


async def test_a_client_without_definitions_starts_by_name(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    async with durably.Client(store) as client:
        assert client.workflows() == []
        eid = await client.start("order", {"id": "o-1", "lines": (2, 3)})
        again = await client.start("order", {"id": "o-1"}, idempotency_key="o-1")
        assert again != eid
        assert await client.start("order", {"id": "x"}, idempotency_key="o-1") == again
        record = await client.get_execution(eid)
        assert record.workflow == "order" and record.status is durably.Status.PENDING
        assert record.input == {"id": "o-1", "lines": [2, 3]}  # stored as given, JSON-shaped
    async with durably.Engine(store, workflows=[order]) as engine:
        # The worker loads the input into the workflow's type when it runs it.
        assert await engine.wait(eid) == {"id": "o-1", "total": 5, "lines": "tuple"}
        with pytest.raises(durably.ExecutionFailedError, match="input of execution") as info:
            await engine.wait(again)  # "lines" is missing: the worker refuses the input
        assert info.value.error["type"] == "durably.PayloadError"


async def test_a_client_with_the_definition_checks_the_input_at_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with durably.Client(MemoryStore(), workflows=[order]) as client:
        with pytest.raises(durably.PayloadError, match="input of workflow 'order'"):
            await client.start("order", {"id": "o-1"})
        with pytest.raises(durably.PayloadError, match="input of workflow 'order'"):
            await client.start(order, {"id": "o-1"})
        assert await client.list_executions() == []


async def test_a_client_may_pass_a_definition_it_did_not_register(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    async with durably.Client(store) as client:
        with pytest.raises(durably.PayloadError, match="does not fit"):
            await client.start(order, {"id": "o-1", "lines": "nope"})
        eid = await client.start(order, Order("o-2", (1,)))
    async with durably.Engine(store, workflows=[order]) as engine:
        assert (await engine.wait(eid))["total"] == 1


@pytest.mark.parametrize("name", ["", "with\x00nul", 42, None])
async def test_a_name_that_is_no_name_is_refused(
    autojump_clock: trio.testing.MockClock, name: Any
) -> None:
    async with durably.Client(MemoryStore()) as client:
        with pytest.raises(durably.ConfigurationError, match="a workflow to start is"):
            await client.start(name, None)
        assert await client.list_executions() == []


async def test_a_worker_refuses_a_name_it_does_not_register_saying_how(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with durably.Engine(MemoryStore(), workflows=[order]) as engine:
        with pytest.raises(durably.UnknownWorkflowError) as info:
            await engine.start("ordr", {"id": "o-1", "lines": []})
        message = str(info.value)
        assert "no workflow named 'ordr' is registered with this engine" in message
        assert "registered: order" in message
        assert "Engine(..., workflows=[...])" in message and "engine.register" in message
        assert await engine.list_executions() == []


async def test_a_client_checking_a_schedule_itself_names_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # With no worker running (a MemoryStore has none), the client checks the call itself.
    async with durably.Client(MemoryStore()) as client:
        with pytest.raises(durably.UnknownWorkflowError) as info:
            await client.schedule("order", None, delay=60)
        message = str(info.value)
        assert "registered with this client" in message
        assert "Client(..., workflows=[...])" in message and "start the store's worker" in message


async def test_a_name_no_worker_registers_waits_for_one_that_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store, clock = MemoryStore(), durably.Clock()
    async with durably.Client(store, clock=clock) as client:
        eid = await client.start("order", {"id": "o-3", "lines": [4]})
    async with durably.Engine(store, clock=clock) as engine:  # an older worker: no "order"
        await trio.sleep(60)
        assert (await engine.get_execution(eid)).status is durably.Status.PENDING
    async with durably.Engine(store, workflows=[order], clock=clock) as engine:
        assert (await engine.wait(eid))["total"] == 4
