"""Who sent a signal and why travel with it: from the sender (an operator at the dashboard
or the command line) through the mailbox into the event of the wait that takes it, so the
audit trail names them; a signal sent without them reads as before."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

import durably
from durably.core._errors import CorruptRecordError
from durably.stores import LmdbStore, MailboxEntry, Store
from durably.stores._codec import decode_mail, encode_mail


@durably.workflow("approval")
async def approval(ctx: durably.Context, _: None) -> Any:
    return await ctx.wait_for_signal("approve", step_id="approve")


@durably.workflow("typed-approval")
async def typed_approval(ctx: durably.Context, _: None) -> Any:
    try:
        return await ctx.wait_for_signal(durably.Signal("approve", int), step_id="approve")
    except durably.SignalPayloadError:
        return "refused"


def delivered(trail: list[durably.AuditEntry], kind: str = "signal_delivered") -> dict[str, Any]:
    [entry] = [e for e in trail if e.kind == kind]
    return entry.data


async def test_the_trail_names_who_sent_a_signal_and_why(
    store_factory: Callable[[], Store], autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[approval, typed_approval]) as engine:
        told = await engine.start(approval)
        plain = await engine.start(approval)
        typed = await engine.start(typed_approval)
        for eid in (told, plain, typed):
            await settle(engine, eid, "waiting")
        receipt = await engine.signal(told, "approve", "yes", by="alice", reason="checked")
        assert receipt.delivery is durably.SignalDelivery.DELIVERED
        await engine.signal(plain, "approve", "yes")
        await engine.signal(typed, "approve", "not a number", by="bob", reason="a typo")
        assert await engine.wait(told, timeout=60) == "yes"
        assert await engine.wait(typed, timeout=60) == "refused"
        await engine.wait(plain, timeout=60)
        trail = await engine.audit(told)
        assert delivered(trail) == {"signal": "approve", "by": "alice", "reason": "checked"}
        assert delivered(await engine.audit(plain)) == {"signal": "approve"}
        rejected = delivered(await engine.audit(typed), "signal_rejected")
        assert (rejected["by"], rejected["reason"]) == ("bob", "a typo")
    # A second engine replays those logs as they are.
    async with durably.Engine(store, workflows=[approval, typed_approval]) as engine:
        assert await engine.wait(told, timeout=60) == "yes"
        assert delivered(await engine.audit(told))["by"] == "alice"


async def test_a_buffered_signal_keeps_its_sender_until_a_worker_takes_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, settle: Any
) -> None:
    store = LmdbStore(tmp_path / "store", inline=True)
    try:
        async with durably.Engine(store, workflows=[approval]) as engine:
            eid = await engine.start(approval)
            await settle(engine, eid, "waiting")
        async with durably.Client(store) as client:
            await client.signal(eid, "approve", 1, by="carol", reason="by phone")
        [entry] = store.mailbox(eid)
        assert (entry.by, entry.reason, entry.payload) == ("carol", "by phone", 1)
        async with durably.Engine(store, workflows=[approval]) as engine:
            assert await engine.wait(eid, timeout=60) == 1
            assert delivered(await engine.audit(eid))["reason"] == "by phone"
        assert store.mailbox(eid) == []
    finally:
        store.close()


@pytest.mark.parametrize("field", ["by", "reason"])
async def test_a_sender_that_is_not_text_is_refused_and_nothing_is_written(
    store_factory: Callable[[], Store],
    autojump_clock: trio.testing.MockClock,
    settle: Any,
    field: str,
) -> None:
    store = store_factory()
    async with durably.Engine(store, workflows=[approval]) as engine:
        eid = await engine.start(approval)
        await settle(engine, eid, "waiting")
        with pytest.raises(durably.ConfigurationError, match=f"signal\\({field}=\\) must be text"):
            await engine.signal(eid, "approve", 1, **{field: 7})
        assert store.mailbox(eid) == []
        assert (await engine.signal(eid, "approve", 2)).accepted
        assert await engine.wait(eid, timeout=60) == 2


def test_mail_codec_keeps_senders_and_refuses_damaged_ones() -> None:
    entry = MailboxEntry(3, "approve", {"ok": True}, "k", 1_700_000_000_000, "dan", "why")
    assert decode_mail(3, encode_mail(entry)) == entry
    plain = MailboxEntry(4, "approve", None)
    assert b"by" not in encode_mail(plain) and decode_mail(4, encode_mail(plain)) == plain
    # An entry written before senders were kept reads with none.
    old = orjson.dumps({"signal": "s", "payload": 1, "dedup_key": None})
    assert decode_mail(5, old) == MailboxEntry(5, "s", 1)
    damaged = orjson.dumps({"signal": "s", "payload": 1, "dedup_key": None, "by": 12})
    with pytest.raises(CorruptRecordError, match="its sender is 12, not text"):
        decode_mail(6, damaged, execution_id="e1")


async def test_the_command_line_records_its_user_and_reason(tmp_path: Path, settle: Any) -> None:
    path = tmp_path / "store"
    store = LmdbStore(path)
    try:
        async with durably.Engine(store, workflows=[approval]) as engine:
            eid = await engine.start(approval)
            with trio.fail_after(60):
                await settle(engine, eid, "waiting")
                args = ["signal", eid, "approve", '"go"', "--reason", "release approved"]
                done = await trio.run_process(
                    [sys.executable, "-m", "durably", "--store", str(path), *args],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env={**os.environ, "USER": "erin"},
                )
                assert done.returncode == 0, done.stderr
                assert await engine.wait(eid, timeout=60) == "go"
            data = delivered(await engine.audit(eid))
            assert (data["by"], data["reason"]) == ("cli:erin", "release approved")
    finally:
        store.close()
