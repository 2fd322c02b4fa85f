"""The event bus (engine/runtime/_bus.py): filters, bounded buffers, ends of iteration.

Events are published the way the engine does after a commit:
``bus.publish(execution_id, events, first_seq)``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from durably.core._audit import AuditEntry
from durably.core._errors import ConfigurationError
from durably.core._events import (
    Emitted,
    ExecutionCompleted,
    ExecutionStarted,
    StepCompleted,
    TimerFired,
    TimerStarted,
)
from durably.runtime._bus import Bus, Emission, Subscription

T0 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)


def emitted(name: str, payload: object = None, at: int = T0, step_id: str = "s") -> Emitted:
    return Emitted(at=at, step_id=step_id, event=name, payload=payload)


def drain(sub: Subscription) -> list[object]:
    out: list[object] = []
    while True:
        try:
            out.append(sub.receive_nowait())
        except trio.WouldBlock:
            return out


# --- subscribing ---


def test_subscribe_refuses_a_buffer_under_one() -> None:
    with pytest.raises(ConfigurationError, match="buffer"):
        Bus().subscribe(buffer=0)


def test_subscribe_refuses_nothing_to_receive() -> None:
    with pytest.raises(ConfigurationError):
        Bus().subscribe(emits=False, audit=False)


def test_subscription_keeps_its_filters() -> None:
    sub = Bus().subscribe(audit=True, execution_id="e1", events=["a", "b", "a"])
    assert sub.emits is True
    assert sub.audit is True
    assert sub.execution_id == "e1"
    assert sub.events == frozenset({"a", "b"})
    assert sub.dropped == 0


# --- what is delivered ---


async def test_emits_are_delivered_as_emissions() -> None:
    bus = Bus()
    sub = bus.subscribe()
    bus.publish(
        "e1",
        [
            ExecutionStarted(at=T0, workflow="wf", input=None),
            emitted("progress", {"pct": 50}, at=T0 + 5, step_id="emit-1"),
            StepCompleted(at=T0 + 6, step_id="s1", result=1),
        ],
        0,
    )
    assert drain(sub) == [Emission("e1", "progress", {"pct": 50}, "emit-1", T0 + 5)]


async def test_default_subscription_gets_no_audit_entries() -> None:
    bus = Bus()
    sub = bus.subscribe()
    bus.publish("e1", [ExecutionStarted(at=T0, workflow="wf", input=None)], 0)
    assert drain(sub) == []


async def test_audit_only_subscription_gets_entries_and_no_emissions() -> None:
    bus = Bus()
    sub = bus.subscribe(emits=False, audit=True)
    bus.publish(
        "e1", [ExecutionStarted(at=T0, workflow="wf", input=None), emitted("x", 1, T0 + 1)], 7
    )
    messages = drain(sub)
    assert all(isinstance(m, AuditEntry) for m in messages)
    assert [(m.kind, m.seq) for m in messages] == [
        ("status_changed", 7),
        ("emitted", 8),
        ("status_changed", 8),  # an event of a step: running
    ]
    started = messages[0]
    assert started.execution_id == "e1"
    assert started.at == datetime(2030, 1, 1, tzinfo=UTC)
    assert started.data["status"] == "pending"
    assert started.data["previous"] is None
    assert messages[1].data == {"event": "x", "payload": 1}


async def test_audit_entries_without_a_first_seq_have_no_seq() -> None:
    bus = Bus()
    sub = bus.subscribe(emits=False, audit=True)
    bus.publish("e1", [ExecutionStarted(at=T0, workflow="wf", input=None)], None)
    [entry] = drain(sub)
    assert entry.seq is None


async def test_subscription_to_both_gets_both() -> None:
    bus = Bus()
    sub = bus.subscribe(emits=True, audit=True)
    bus.publish("e1", [emitted("x", 1)], 3)
    messages = drain(sub)
    assert Emission("e1", "x", 1, "s", T0) in messages
    assert any(isinstance(m, AuditEntry) and m.kind == "emitted" for m in messages)


async def test_audit_status_follows_the_execution_across_publishes() -> None:
    bus = Bus()
    sub = bus.subscribe(emits=False, audit=True)
    bus.publish("e1", [ExecutionStarted(at=T0, workflow="wf", input=None)], 0)
    bus.publish("e1", [TimerStarted(at=T0 + 1, step_id="nap", wake_at=T0 + 1000)], 1)
    bus.publish("e1", [TimerFired(at=T0 + 1000, step_id="nap")], 2)
    bus.publish("e1", [ExecutionCompleted(at=T0 + 1001, result=None)], 3)
    changes = [
        (m.data["previous"], m.data["status"]) for m in drain(sub) if m.kind == "status_changed"
    ]
    assert changes == [
        (None, "pending"),
        ("pending", "sleeping"),
        ("sleeping", "running"),
        ("running", "completed"),
    ]


async def test_execution_id_filter() -> None:
    bus = Bus()
    only_e1 = bus.subscribe(audit=True, execution_id="e1")
    everyone = bus.subscribe()
    bus.publish("e2", [emitted("x", 2)], 0)
    bus.publish("e1", [emitted("x", 1)], 0)
    received = drain(only_e1)
    assert received
    assert {m.execution_id for m in received} == {"e1"}
    assert [m.execution_id for m in drain(everyone)] == ["e2", "e1"]


async def test_events_filter_selects_emits_by_name() -> None:
    bus = Bus()
    sub = bus.subscribe(events=["wanted", "also"])
    bus.publish("e1", [emitted("wanted", 1), emitted("other", 2), emitted("also", 3)], 0)
    assert [(m.event, m.payload) for m in drain(sub)] == [("wanted", 1), ("also", 3)]


async def test_an_empty_events_filter_selects_no_emits() -> None:
    bus = Bus()
    sub = bus.subscribe(events=[])
    bus.publish("e1", [emitted("x")], 0)
    assert drain(sub) == []


async def test_publishing_with_no_subscribers_is_fine() -> None:
    Bus().publish("e1", [emitted("x"), ExecutionStarted(at=T0, workflow="wf", input=None)], 0)


# --- bounded buffers ---


async def test_a_full_buffer_drops_and_counts() -> None:
    bus = Bus()
    small = bus.subscribe(buffer=2)
    roomy = bus.subscribe(buffer=100)
    bus.publish("e1", [emitted(f"m{i}") for i in range(5)], 0)
    assert [m.event for m in drain(small)] == ["m0", "m1"]
    assert small.dropped == 3
    # The slow subscriber did not cost the other one anything.
    assert [m.event for m in drain(roomy)] == [f"m{i}" for i in range(5)]
    assert roomy.dropped == 0
    # Room again once read: later messages arrive, the dropped ones are gone for good.
    bus.publish("e1", [emitted("m5")], 5)
    assert [m.event for m in drain(small)] == ["m5"]
    assert small.dropped == 3


# --- the end of a subscription ---


async def test_bus_close_ends_iteration_after_buffered_messages() -> None:
    bus = Bus()
    sub = bus.subscribe()
    bus.publish("e1", [emitted("a"), emitted("b")], 0)
    bus.close()
    bus.publish("e1", [emitted("after close")], 2)  # nobody is subscribed any more
    with trio.fail_after(1):  # a regression fails instead of hanging
        assert [m.event async for m in sub] == ["a", "b"]
        with pytest.raises(trio.EndOfChannel):
            await sub.receive()


async def test_bus_close_wakes_a_waiting_iterator() -> None:
    bus = Bus()
    sub = bus.subscribe()
    got: list[object] = []

    async def reader() -> None:
        async for message in sub:
            got.append(message)
        got.append("ended")

    with trio.fail_after(1):  # a regression fails instead of hanging
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            bus.publish("e1", [emitted("a")], 0)
            await trio.testing.wait_all_tasks_blocked()
            bus.close()
    assert got == [Emission("e1", "a", None, "s", T0), "ended"]


async def test_subscribing_to_a_closed_bus_ends_at_once() -> None:
    bus = Bus()
    bus.close()
    sub = bus.subscribe()
    bus.publish("e1", [emitted("a")], 0)
    with pytest.raises(trio.EndOfChannel):
        sub.receive_nowait()


async def test_subscription_close_stops_delivery() -> None:
    bus = Bus()
    sub = bus.subscribe()
    other = bus.subscribe()
    bus.publish("e1", [emitted("before")], 0)
    sub.close()
    bus.publish("e1", [emitted("after")], 1)
    with trio.fail_after(1):  # a regression fails instead of hanging
        assert [m.event async for m in sub] == ["before"]
    assert [m.event for m in drain(other)] == ["before", "after"]


async def test_async_with_unsubscribes() -> None:
    bus = Bus()
    async with bus.subscribe(emits=False, audit=True) as sub:
        assert isinstance(sub, Subscription)
        bus.publish("e1", [ExecutionStarted(at=T0, workflow="wf", input=None)], 0)
        [entry] = drain(sub)
        assert entry.data["status"] == "pending"
    # Left the block: the bus no longer counts it as an audit reader, so the status it
    # tracked for e1 is forgotten at e1's next publish (instead of going stale).
    bus.publish("e1", [TimerStarted(at=T0 + 1, step_id="nap", wake_at=T0 + 9)], 1)
    later = bus.subscribe(emits=False, audit=True)
    bus.publish("e1", [TimerFired(at=T0 + 9, step_id="nap")], 2)
    [change] = [m for m in drain(later) if m.kind == "status_changed"]
    assert (change.data["previous"], change.data["status"]) == (None, "running")


async def test_publishing_to_a_left_subscription_does_not_raise() -> None:
    bus = Bus()
    async with bus.subscribe() as sub:
        pass
    bus.publish("e1", [emitted("a")], 0)
    assert sub.dropped == 0
