"""``durably start`` and the operator's repairs (``skip-step``, ``force-fail``,
``retry-rollback``), run as the real console script in subprocesses against an LMDB
store: with no worker (the start is durable, the repair is written holding the worker
lock, and a worker started afterwards carries both out), and beside a running worker
(which runs the start and the repairs, and answers ``--wait``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cli_ops_app import (
    cli,
    engine_run,
    fetch,
    hold,
    invoke,
    new_store,
    read,
    tick,
    trip,
    until,
    worker,
)

import durably
from durably.core._events import ExecutionStarted, OperatorActed, StepSkipped

Settle = Any


def acted(store: Path, eid: str) -> list[tuple[str, str | None, str | None]]:
    """The operator actions in the execution's log: (action, by, reason)."""
    _, events = read(store, eid)
    return [(e.action, e.by, e.reason) for e in events if isinstance(e, OperatorActed)]


def test_start_is_durable_with_no_worker_and_reads_its_input_from_a_file_or_stdin(
    tmp_path: Path,
) -> None:
    store = new_store(tmp_path)
    first = cli("start", "echo", '{"n": 1}', "--idempotency-key", "order-1", store=store)
    assert first.returncode == 0, first.stderr
    eid = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", eid)
    again = cli("start", "echo", '{"n": 2}', "--idempotency-key", "order-1", store=store)
    assert again.returncode == 0 and again.stdout.strip() == eid  # nothing new started
    (tmp_path / "input.json").write_text('{\n  "from": "a file"\n}\n')
    from_file = cli("start", "echo", f"@{tmp_path / 'input.json'}", store=store)
    from_stdin = cli("start", "echo", "-", stdin="[1, 2]", store=store)
    bare = cli("start", "echo", store=store)
    ids = [eid, *(r.stdout.strip() for r in (from_file, from_stdin, bare))]
    records = [read(store, i)[0] for i in ids]
    assert [r.input for r in records] == [{"n": 1}, {"from": "a file"}, [1, 2], None]
    assert {(r.status, r.workflow) for r in records} == {("pending", "echo")}
    assert records[0].idempotency_key == "order-1"

    for args, says in (  # in this process: quick, and the same code as the script's
        (("echo", "{nope"), "INPUT is not valid JSON"),
        (("echo", "@" + str(tmp_path / "absent.json")), "cannot read INPUT"),
        (("echo", "--idempotency-key", ""), "idempotency_key must be a non-empty string"),
        (("echo", "--wait", "--timeout", "-1"), "--timeout"),
        (("echo", "--timeout", "5"), "--timeout goes with --wait"),
    ):
        refused = invoke(store, "start", *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert says in refused.stderr, (args, refused.stderr)
    missing = cli("start", "echo", store=tmp_path / "nowhere")
    assert missing.returncode == 3 and "no durably store" in missing.stderr

    # A worker started afterwards runs what was started while none ran.
    async def finish(engine: durably.Engine) -> list[Any]:
        return [await engine.wait(i) for i in ids]

    assert engine_run(store, finish) == [
        {"echo": {"n": 1}},
        {"echo": {"from": "a file"}},
        {"echo": [1, 2]},
        {"echo": None},
    ]


def test_repairs_with_no_worker_are_recorded_and_carried_out_by_the_next_one(
    tmp_path: Path, settle: Settle
) -> None:
    store = new_store(tmp_path)
    flag = tmp_path / "flag"

    async def setup(engine: durably.Engine) -> tuple[str, str, str]:
        failed = await engine.start(fetch, str(flag))
        stuck = await engine.start(trip, str(flag))
        waiting = await engine.start(hold, None)
        await settle(engine, failed, "failed")
        await settle(engine, stuck, "compensation_failed")
        await settle(engine, waiting, "waiting")
        return failed, stuck, waiting

    failed, stuck, waiting = engine_run(store, setup)

    skipped = cli(
        "skip-step", failed, "feed", "-", "--reason", "feed replaced", store=store, stdin='"x"'
    )
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout == f"skipped step feed of {failed}\n"
    record, events = read(store, failed)
    assert record.status == "running"  # resumed in the log; the next worker runs it
    step = next(e for e in events if isinstance(e, StepSkipped))
    assert (step.step_id, step.result, step.by, step.reason) == (
        "feed",
        "x",
        "cli:ana",
        "feed replaced",
    )

    forced = cli("force-fail", waiting, "--reason", "partner is gone", store=store)
    assert forced.returncode == 0 and forced.stdout == f"force-failed {waiting}\n", forced.stderr
    record, _ = read(store, waiting)
    assert record.status == "failed" and record.error is not None
    assert record.error["message"] == "partner is gone"

    flag.write_text("the hotel's API is back")
    rolled = cli("retry-rollback", stuck, store=store)
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout == f"retried the rollback of {stuck}\n"
    assert read(store, stuck)[0].status == "running"

    assert acted(store, failed) == [("skip_step", "cli:ana", "feed replaced")]
    assert acted(store, waiting) == [("force_fail", "cli:ana", "partner is gone")]
    assert acted(store, stuck) == [("retry_rollback", "cli:ana", None)]

    async def finish(engine: durably.Engine) -> list[Any]:
        return [await engine.wait(failed), await engine.wait(stuck)]

    assert engine_run(store, finish) == [{"got": "x"}, "rolled back"]
    assert read(store, waiting)[0].status == "failed"


def test_repairs_refuse_what_does_not_fit_and_change_nothing(
    tmp_path: Path, settle: Settle
) -> None:
    store = new_store(tmp_path)
    flag = tmp_path / "flag"

    async def setup(engine: durably.Engine) -> tuple[str, str]:
        failed = await engine.start(fetch, str(flag))
        waiting = await engine.start(hold, None)
        await settle(engine, failed, "failed")
        await settle(engine, waiting, "waiting")
        return failed, waiting

    failed, waiting = engine_run(store, setup)
    logs = {eid: read(store, eid)[1] for eid in (failed, waiting)}
    unknown = "0" * 32
    for args, code, says in (
        (("skip-step", failed, "feed"), 2, "Missing option '--reason'"),
        (("skip-step", failed, "feed", "{nope", "--reason", "r"), 2, "RESULT is not valid JSON"),
        (("skip-step", failed, "nope", "--reason", "r"), 1, "step 'nope'"),
        (("skip-step", waiting, "go", "--reason", "r"), 1, "a step can be skipped in a failed"),
        (("skip-step", unknown, "feed", "--reason", "r"), 3, "no execution"),
        (("force-fail", waiting), 2, "Missing option '--reason'"),
        (("force-fail", waiting, "--reason", ""), 2, "force_fail needs a reason"),
        (("force-fail", failed, "--reason", "r"), 1, "only an unfinished"),
        (("force-fail", unknown, "--reason", "r"), 3, "no execution"),
        (("retry-rollback", failed), 1, "only an execution whose compensation failed"),
        (("retry-rollback", unknown), 3, "no execution"),
    ):  # in this process: quick, and the same code as the script's
        result = invoke(store, *args)
        assert result.exit_code == code, (args, result.output)
        assert says in result.stderr, (args, result.stderr)
    no_store = cli("force-fail", waiting, "--reason", "r")
    assert no_store.returncode == 2 and "DURABLY_STORE" in no_store.stderr
    for eid, status in ((failed, "failed"), (waiting, "waiting")):
        record, events = read(store, eid)
        assert record.status == status and events == logs[eid]


@pytest.mark.slow
def test_start_wait_and_repairs_through_a_running_worker(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    flag = tmp_path / "flag"
    early = cli("start", "echo", '"before the worker"', store=store).stdout.strip()

    async def schedule(engine: durably.Engine) -> None:
        await engine.ensure_schedule(tick, 7, id="beat", interval=3600)

    engine_run(store, schedule)
    with worker(store):
        # Schedule changes go to the worker (its fires write the same records).
        paused = cli("schedules", "pause", "beat", store=store)
        assert paused.returncode == 0 and paused.stdout == "paused beat\n", paused.stderr
        assert "paused" in cli("schedules", store=store).stdout
        triggered = cli("schedules", "trigger", "beat", store=store)
        assert triggered.returncode == 0, triggered.stderr
        run = until(store, triggered.stdout.strip(), "completed").result
        assert run["data"] == 7 and run["scheduled_at"] is not None
        assert cli("schedules", "remove", "beat", store=store).returncode == 0
        assert cli("schedules", store=store).stderr == "no schedules\n"

        done = cli("start", "echo", '{"n": 3}', "--wait", store=store)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"echo": {"n": 3}}  # stdout: the result only
        eid = done.stderr.split()[1]
        assert done.stderr == f"started {eid}\n" and read(store, eid)[0].status == "completed"
        assert until(store, early, "completed").result == {"echo": "before the worker"}

        failed = cli("start", "fetch", json.dumps(str(flag)), "--wait", store=store)
        assert failed.returncode == 1 and failed.stdout == ""
        feid = failed.stderr.split()[1]
        assert (
            f"Error: execution {feid} failed: durably.StepError: step 'feed' failed: "
            "RuntimeError: the feed is down" in failed.stderr
        )
        (tmp_path / "result.json").write_text('"fetched by hand"')
        skipped = cli(
            "skip-step", feid, "feed", f"@{tmp_path / 'result.json'}", "--reason", "r", store=store
        )
        assert skipped.returncode == 0, skipped.stderr
        assert until(store, feid, "completed").result == {"got": "fetched by hand"}

        waiting = cli("start", "hold", "--idempotency-key", "h-1", store=store).stdout.strip()
        until(store, waiting, "waiting")
        timed_out = cli(
            "start", "hold", "--idempotency-key", "h-1", "--wait", "--timeout", "0.3", store=store
        )
        assert timed_out.returncode == 1
        assert f"execution {waiting} did not finish within 0.3 s" in timed_out.stderr
        forced = cli("force-fail", waiting, "--reason", "partner is gone", store=store)
        assert forced.returncode == 0, forced.stderr
        record = until(store, waiting, "failed")
        assert record.error is not None and record.error["message"] == "partner is gone"
        again = cli("start", "hold", "--idempotency-key", "h-1", "--wait", store=store)
        assert again.returncode == 1 and "partner is gone" in again.stderr

        cancelled = cli("start", "hold", "--idempotency-key", "h-2", store=store).stdout.strip()
        until(store, cancelled, "waiting")
        assert cli("cancel", cancelled, "--wait", store=store).returncode == 0
        ended = cli("start", "hold", "--idempotency-key", "h-2", "--wait", store=store)
        assert ended.returncode == 1
        assert f"execution {cancelled} was cancelled" in ended.stderr
    _, events = read(store, eid)
    assert isinstance(events[0], ExecutionStarted) and events[0].input == {"n": 3}
    assert acted(store, feid) == [("skip_step", "cli:ana", "r")]
    assert acted(store, waiting) == [("force_fail", "cli:ana", "partner is gone")]
