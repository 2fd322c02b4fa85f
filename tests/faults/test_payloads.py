"""Entries 9, 10 and 21: values that cannot be stored, values that change in a round trip,
and values over the engine's size limit. Each fails (or is shaped) before any commit."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import trio

import durably

from ._helpers import events, lmdb_engine


class Opaque:
    """Not serialisable: no cattrs hook knows it."""


async def test_09_unserialisable_step_result_fails_before_commit_naming_step_and_type(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("bad")
    async def bad(ctx: durably.Context, _: None) -> None:
        await ctx.step("ok", lambda: 1)
        await ctx.step("make-opaque", Opaque)

    async with lmdb_engine(tmp_path / "s", [bad]) as engine:
        eid = await engine.start(bad)
        with pytest.raises(durably.ExecutionFailedError) as info:
            await engine.wait(eid)
    message = info.value.error["message"]
    assert info.value.error["type"] == "durably.PayloadError"
    assert "make-opaque" in message and "Opaque" in message
    log = events(tmp_path / "s", eid)
    assert [e.get("step_id") for e in log if e["t"].startswith("step.")] == ["ok"]
    assert log[-1]["t"] == "failed"  # nothing of the bad value was written


async def test_10_round_trip_changes_are_seen_by_the_first_run_too(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[object] = []

    def pair() -> tuple[int, int]:
        return (1, 2)

    def untyped():  # type: ignore[no-untyped-def]  # no annotation: stored shape comes back
        return (3, {"when": datetime.date(2026, 1, 2)})

    @durably.workflow("shapes")
    async def shapes(ctx: durably.Context, _: None) -> str:
        seen.append(await ctx.step("typed", pair))
        seen.append(await ctx.step("untyped", untyped))
        await ctx.sleep(5, step_id="nap")
        return "done"

    store = tmp_path / "s"
    async with lmdb_engine(store, [shapes]) as engine:
        eid = await engine.start(shapes)
        await trio.sleep(1)
    first_run = list(seen)
    async with lmdb_engine(store, [shapes]) as engine:
        assert await engine.wait(eid) == "done"
    replay = seen[len(first_run) :]
    assert first_run == replay  # the first run saw exactly what the replay saw
    assert first_run[0] == (1, 2) and type(first_run[0]) is tuple  # annotated: restored
    assert first_run[1] == [3, {"when": "2026-01-02"}]  # unannotated: the stored shape


async def test_21_payload_over_the_limit_fails_at_its_call_nothing_written(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    limit = 10_000

    @durably.workflow("big")
    async def big(ctx: durably.Context, size: int) -> int:
        await ctx.step("small", lambda: "x" * 100)
        blob = await ctx.step("huge", lambda: "x" * size)
        return len(blob)

    @durably.workflow("big-result")
    async def big_result(ctx: durably.Context, size: int) -> str:
        return "y" * size

    @durably.workflow("text")
    async def text(ctx: durably.Context, data: str) -> int:
        return len(data)

    store = tmp_path / "s"
    wfs = [big, big_result, text]
    async with lmdb_engine(store, wfs, max_payload_bytes=limit) as engine:
        with pytest.raises(durably.PayloadError, match="input of workflow 'text'"):
            await engine.start(text, "t" * limit)
        assert await engine.list_executions() == []
        eid = await engine.start(big, 2 * limit)
        with pytest.raises(durably.ExecutionFailedError, match="max_payload_bytes") as info:
            await engine.wait(eid)
        assert "'huge'" in info.value.error["message"]
        res = await engine.start(big_result, 2 * limit)
        with pytest.raises(durably.ExecutionFailedError, match="outcome"):
            await engine.wait(res)
        waiter = await engine.start(big, 100)  # under the limit: fine
        assert await engine.wait(waiter) == 100
        with pytest.raises(durably.PayloadError, match="signal 'blob'"):
            await engine.signal(waiter, "blob", "z" * (2 * limit))
        # The engine goes on: nothing was half-written.
        assert (await engine.start_and_wait(big, 10)).data == 10
    log = events(store, eid)
    assert [e.get("step_id") for e in log if e["t"].startswith("step.")] == ["small"]
    assert all(len(str(e)) < limit for e in log)


async def test_21_default_limit_is_sixteen_mebibytes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    @durably.workflow("huge")
    async def huge(ctx: durably.Context, size: int) -> int:
        return len(await ctx.step("blob", lambda: "x" * size))

    async with lmdb_engine(tmp_path / "s", [huge]) as engine:
        assert engine._settings.max_payload_bytes == 16 * 1024 * 1024
        eid = await engine.start(huge, 17 * 1024 * 1024)
        with pytest.raises(durably.ExecutionFailedError, match="max_payload_bytes"):
            await engine.wait(eid)
        assert await engine.wait(await engine.start(huge, 1024 * 1024)) == 1024 * 1024
