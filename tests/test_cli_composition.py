"""The console script shows what composition records: a parent's children and published
values, a child's parent, and which executions took a patch."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from test_cli import durably as run_cli

import durably
from durably.stores import LmdbStore


@durably.workflow("cli-kid")
async def kid(ctx: durably.Context, n: int) -> int:
    return n + 1


@durably.workflow("cli-parent")
async def parent(ctx: durably.Context, n: int) -> int:
    if ctx.patched("faster"):
        await ctx.publish("stage", "children")
    got = await ctx.gather(*[ctx.child(kid, i, step_id=f"kid-{i}") for i in range(n)])
    return sum(got)


def test_show_prints_children_parent_and_published_and_list_filters_by_patch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"

    async def make() -> str:
        async with durably.Engine(LmdbStore(path), workflows=[parent, kid]) as engine:
            eid = await engine.start(parent, 2)
            assert await engine.wait(eid) == 3
            return eid

    eid = trio.run(make)
    shown = run_cli("show", eid, store=path)
    assert shown.returncode == 0, shown.stderr
    assert "children:" in shown.stdout and "kid-0" in shown.stdout and "completed" in shown.stdout
    assert 'stage: "children"' in shown.stdout
    doc = json.loads(run_cli("show", eid, "--json", store=path).stdout)
    assert sorted(c["step_id"] for c in doc["children"]) == ["kid-0", "kid-1"]
    assert doc["published"] == {"stage": "children"}
    child = doc["children"][0]["execution_id"]
    assert f"parent: {eid}" in run_cli("show", child, store=path).stdout

    took = run_cli("list", "--patch", "faster", "--json", store=path)
    assert [e["id"] for e in json.loads(took.stdout)] == [eid]
    lacks = run_cli("list", "--without-patch", "faster", "--json", store=path)
    assert sorted(e["id"] for e in json.loads(lacks.stdout)) == sorted(
        c["execution_id"] for c in doc["children"]
    )
