"""The command line's queue commands against a real LMDB store: ``enqueue`` with no worker
(the execution waits, queued, where ``list`` shows it), a real worker that declares the
queue admitting it, dedup refusals (exit 1, naming the holder), bad input (exit 2,
nothing queued), ``queues`` reporting what the store holds, and ``show``'s queue fields
as ISO-8601 times (local in the text, UTC in the JSON).

Most commands run in-process through click's ``CliRunner`` (each opens its own client on
the store, as the console script does); the first test drives the real console script.
Store and engine are never open in the test process while a command runs (LMDB opens an
environment once per process)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from click.testing import CliRunner, Result
from test_cli import durably as console

import durably
from durably._cli import main
from durably._cli_common import stamp
from durably._cli_queues import iso, seconds_text
from durably.runtime._enqueue import stats_from_store
from durably.stores import ExecutionRecord, LmdbStore

GO = durably.Signal("go")
Settle = Callable[..., Awaitable[durably.Execution]]


@durably.workflow("send")
async def send(ctx: durably.Context, data: dict[str, str]) -> str:
    return await ctx.step("send", lambda: f"sent to {data['to']}")


@durably.workflow("hold")
async def hold(ctx: durably.Context, n: int) -> int:
    await ctx.wait_for_signal(GO, step_id="go")
    return n


def cli(store: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--store", str(store), *args], input=stdin)


def new_store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    LmdbStore(path).close()
    return path


def listed(store: Path, *args: str) -> list[str]:
    result = cli(store, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [e["id"] for e in json.loads(result.stdout)]


def record(store: Path, eid: str) -> ExecutionRecord:
    reader = LmdbStore(store, readonly=True)
    try:
        found = reader.get_execution(eid)
    finally:
        reader.close()
    assert found is not None
    return found


def run_worker(store: Path, queues: list[durably.Queue], body: Any) -> Any:
    """Run ``body(engine)`` in a worker on ``store`` under virtual time."""

    async def main_() -> Any:
        lmdb = LmdbStore(store, inline=True)
        try:
            async with durably.Engine(lmdb, workflows=[send, hold], queues=queues) as engine:
                return await body(engine)
        finally:
            lmdb.close()

    return trio.run(main_, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.slow
def test_enqueue_waits_for_a_worker_that_declares_the_queue_then_completes(
    tmp_path: Path,
) -> None:
    store = new_store(tmp_path)
    args = ("enqueue", "mail", "send", '{"to": "ana"}', "--dedup-id", "order-1")
    first = console(*args, "--partition", "tenant-a", store=store)
    assert first.returncode == 0, first.stderr
    eid = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", eid)

    again = console(*args, store=store)
    assert again.returncode == 1
    assert eid in again.stderr and "order-1" in again.stderr
    assert listed(store, "--status", "queued", "--queue", "mail") == [eid]  # one, not two
    assert listed(store, "--status", "queued", "--queue", "other") == []
    assert listed(store, "--status", "running", "--queue", "mail") == []
    assert record(store, eid).status == "queued"

    async def finish(engine: durably.Engine) -> Any:
        return await engine.wait(eid, timeout=60)

    assert run_worker(store, [durably.Queue("mail", concurrency=1)], finish) == "sent to ana"

    done = record(store, eid)
    assert done.status == "completed" and done.admitted_ms is not None
    assert listed(store, "--status", "queued", "--queue", "mail") == []
    assert listed(store, "--status", "completed", "--queue", "mail") == [eid]
    shown = cli(store, "show", eid)
    assert shown.exit_code == 0, shown.output
    for line in (
        "queue: mail",
        "partition: tenant-a",
        "dedup id: order-1",
        f"admitted at: {stamp(done.admitted_ms)}",  # local, as the command shows it
    ):
        assert f"  {line}\n" in shown.stdout
    assert str(done.admitted_ms) not in shown.stdout  # never raw epoch milliseconds
    assert "priority" not in shown.stdout and "not before" not in shown.stdout
    document = json.loads(cli(store, "show", eid, "--json").stdout)["queue"]
    assert document == {
        "queue": "mail",
        "priority": 0,
        "partition": "tenant-a",
        "dedup_id": "order-1",
        "admitted_at": iso(done.admitted_ms),
        "not_before": None,
    }
    # Its holder has ended: the dedup id is free again.
    freed = console(*args, store=store)
    assert freed.returncode == 0, freed.stderr
    assert listed(store, "--status", "queued", "--queue", "mail") == [freed.stdout.strip()]


def test_queues_reports_each_queue_s_limits_and_the_store_s_numbers(
    tmp_path: Path, settle: Settle
) -> None:
    store = new_store(tmp_path)
    mail = durably.Queue(
        "mail", concurrency=1, rate_limit=(5, 60.0), partition_concurrency=1, priority=True
    )
    ids = {}
    for priority in (5, 1, 3):
        got = cli(store, "enqueue", "mail", "hold", str(priority), "--priority", str(priority))
        assert got.exit_code == 0, got.output
        ids[priority] = got.stdout.strip()

    async def admit_one(engine: durably.Engine) -> list[str]:
        # Recovery offers all three at once: the lowest priority number goes first, and
        # with concurrency 1 it holds the only place while it waits.
        await settle(engine, ids[1], "waiting")
        return [(await engine.get_execution(ids[p])).status for p in (5, 1, 3)]

    # Real time here: the stats compare admission times with the command's wall clock.
    async def main_() -> list[str]:
        lmdb = LmdbStore(store)
        try:
            queues = [mail, durably.Queue("idle")]
            async with durably.Engine(lmdb, workflows=[hold], queues=queues) as engine:
                with trio.fail_after(20):
                    return await admit_one(engine)
        finally:
            lmdb.close()

    assert trio.run(main_) == ["queued", "waiting", "queued"]
    delayed = cli(store, "enqueue", "mail", "hold", "9", "--delay", "3600")
    assert delayed.exit_code == 0, delayed.output
    assert cli(store, "enqueue", "orphan", "hold", "7").exit_code == 0

    oldest = min(record(store, ids[p]).created_ms for p in (5, 3))  # the two not delayed
    before = int(time.time() * 1000)  # whole milliseconds, as the engine's clock reads
    as_json = cli(store, "queues", "--json")
    text = cli(store, "queues")
    after = time.time() * 1000
    assert as_json.exit_code == 0 and text.exit_code == 0, as_json.output + text.output
    doc = {q["name"]: q for q in json.loads(as_json.stdout)}
    assert list(doc) == ["idle", "mail", "orphan"]
    reader = LmdbStore(store, readonly=True)
    try:
        for name, entry in doc.items():
            expected = stats_from_store(reader, name, int(before))
            for key in ("queued", "delayed", "running", "admitted_per_second"):
                assert entry[key] == getattr(expected, key), (name, key)
        assert dict(reader.list_queues())["mail"] == doc["mail"]["declaration"]
    finally:
        reader.close()
    assert (doc["mail"]["queued"], doc["mail"]["delayed"], doc["mail"]["running"]) == (3, 1, 1)
    assert doc["mail"]["admitted_per_second"] == 1 / 60
    assert (before - oldest) / 1000 <= doc["mail"]["oldest_wait_s"] <= (after - oldest) / 1000
    assert doc["idle"]["declaration"] == durably.Queue("idle").to_data()
    assert doc["orphan"]["declaration"] is None and doc["orphan"]["queued"] == 1

    lines = text.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == "idle    no limits  |  queued 0, running 0, admitted 0/s, oldest wait -"
    assert lines[1].startswith(
        "mail    concurrency 1, rate 5 per 60 s, partition concurrency 1, by priority  |  "
        "queued 3 (1 delayed), running 1, admitted 0.0167/s, oldest wait "
    )
    assert re.search(r"oldest wait \d+(\.\d)? s$", lines[1])  # seconds, not milliseconds
    assert lines[2].startswith("orphan  not declared by a worker yet  |  queued 1, running 0")

    held = record(store, ids[1])
    shown = cli(store, "show", ids[1]).stdout
    assert "  priority: 1\n" in shown and f"  admitted at: {stamp(held.admitted_ms)}\n" in shown
    later = record(store, delayed.stdout.strip())
    assert later.not_before is not None
    assert f"  not before: {stamp(later.not_before)}\n" in cli(store, "show", later.id).stdout


def test_bad_enqueue_input_exits_2_and_queues_nothing(tmp_path: Path) -> None:
    store = new_store(tmp_path)

    async def declare(engine: durably.Engine) -> None:
        return None

    run_worker(store, [durably.Queue("fifo")], declare)
    for args, says in (
        (("q", "send", "{nope"), "INPUT is not valid JSON"),
        (("q", "send", "NaN"), "NaN is not JSON"),
        (("q", "send", "@" + str(store / "absent.json")), "cannot read INPUT"),
        (("q", "send", "--priority", "soon"), "'soon' is not a valid integer"),
        (("q", "send", "--priority", str(2**31)), "--priority"),
        (("q", "send", "--delay", "-1"), "--delay"),
        (("q", "send", "--delay", "nan"), "delay must be a number of seconds"),
        (("", "send"), "queue must be a non-empty string"),
        (("q", "send", "--dedup-id", ""), "dedup_id must be a non-empty string"),
        (("fifo", "send", "--priority", "2"), "queue 'fifo' admits in arrival order"),
    ):
        result = cli(store, "enqueue", *args)
        assert result.exit_code == 2, (args, result.output)
        assert says in result.stderr, (args, result.stderr)
    assert listed(store, "--status", "queued") == []
    missing = cli(tmp_path / "nowhere", "enqueue", "q", "send")
    assert missing.exit_code == 3 and "no durably store" in missing.stderr


def test_enqueue_reads_its_input_from_a_file_or_stdin_and_delays(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    (tmp_path / "input.json").write_text('{\n  "to": "bo"\n}\n')
    from_file = cli(store, "enqueue", "q", "send", f"@{tmp_path / 'input.json'}")
    from_stdin = cli(store, "enqueue", "q", "send", "-", stdin='{"to": "cy"}')
    bare = cli(store, "enqueue", "q", "send")
    ids = [r.stdout.strip() for r in (from_file, from_stdin, bare)]
    assert [record(store, eid).input for eid in ids] == [{"to": "bo"}, {"to": "cy"}, None]

    before = int(time.time() * 1000)
    later = cli(store, "enqueue", "q", "send", "--delay", "90").stdout.strip()
    held = record(store, later)
    assert held.not_before is not None
    assert held.not_before - held.created_ms == 90_000 and held.created_ms >= before
    doc = json.loads(cli(store, "queues", "--json").stdout)
    assert [(q["name"], q["queued"], q["delayed"]) for q in doc] == [("q", 4, 1)]


def test_list_queue_filter_combines_with_status_workflow_limit_and_after(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    on_q = [cli(store, "enqueue", "q", wf).stdout.strip() for wf in ("a", "b", "a", "a")]
    on_r = cli(store, "enqueue", "r", "a").stdout.strip()

    async def start(client: durably.Client) -> str:
        return await client.start("a")

    async def main_() -> str:
        async with durably.Client(store) as client:
            return await start(client)

    plain = trio.run(main_)
    assert listed(store) == [*on_q, on_r, plain]
    assert listed(store, "--queue", "q") == on_q
    assert listed(store, "--queue", "q", "--workflow", "a") == [on_q[0], on_q[2], on_q[3]]
    assert listed(store, "--queue", "q", "--limit", "2") == on_q[:2]
    assert listed(store, "--queue", "q", "--after", on_q[1]) == on_q[2:]
    assert listed(store, "--queue", "r", "--status", "queued") == [on_r]
    assert listed(store, "--queue", "q", "--status", "pending") == []
    rows = cli(store, "list", "--queue", "q", "--status", "queued").stdout.splitlines()
    assert [row.split()[:3] for row in rows] == [
        [e, "queued", w] for e, w in zip(on_q, "abaa", strict=True)
    ]
    empty = cli(store, "list", "--queue", "nope")
    assert empty.exit_code == 0 and empty.stdout == "" and "no executions" in empty.stderr


def test_queues_on_a_store_without_queues(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    text = cli(store, "queues")
    assert text.exit_code == 0 and text.stdout == "" and "no queues" in text.stderr
    assert json.loads(cli(store, "queues", "--json").stdout) == []
    assert cli(tmp_path / "nowhere", "queues").exit_code == 3


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0 s"),
        (0.42, "0.4 s"),
        (9.96, "10.0 s"),
        (42.9, "42 s"),
        (185, "3 m 05 s"),
        (7800, "2 h 10 m"),
        (277_200, "3 d 05 h"),
    ],
)
def test_waits_read_as_durations(seconds: float, text: str) -> None:
    assert seconds_text(seconds) == text
