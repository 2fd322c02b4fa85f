"""``durably schedules``: the listing (next fire in the local zone, or UTC; the run
count), ``--json``, and ``pause``, ``resume``, ``remove`` and ``trigger`` against an LMDB
store with no worker running (the calls are written holding the worker lock; the
running-worker path is in ``test_cli_ops.py``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import trio
from cli_ops_app import cli, engine_run, invoke, new_store, read, tick

import durably
from durably.core._events import ExecutionStarted

#: US Eastern as a POSIX rule, for the command's ``TZ`` (read without a tz database),
#: and as the same zone for the test's expectations.
EASTERN = "EST5EDT,M3.2.0,M11.1.0"
NEW_YORK = ZoneInfo("America/New_York")


def by_id(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines()}


def documents(store: Path) -> dict[str, dict[str, Any]]:
    listed = invoke(store, "schedules", "--json")
    assert listed.exit_code == 0, listed.output
    return {doc["id"]: doc for doc in json.loads(listed.stdout)}


def make_schedules(store: Path) -> None:
    async def setup(engine: durably.Engine) -> None:
        await engine.ensure_schedule(
            tick, {"kind": "hourly"}, id="hourly", cron="0 * * * *", timezone="Asia/Kolkata"
        )
        await engine.ensure_schedule(tick, 7, id="beat", interval=300)
        for sid, month, day in (("summer", 7, 1), ("winter", 1, 15)):
            at = datetime(2040 + (month == 1), month, day, 12, tzinfo=UTC)
            await engine.schedule(tick, sid, at=at, id=sid)
        await engine.schedule(tick, "soon", delay=1, id="soon")
        while (await engine.get_schedule("soon")).status is not durably.ScheduleStatus.DONE:  # noqa: ASYNC110
            await trio.sleep(0.5)  # virtual time: it fires once, then it is done

    engine_run(store, setup)


def test_the_listing_shows_next_fire_times_local_or_utc_and_run_counts(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    make_schedules(store)
    docs = documents(store)
    assert sorted(docs) == ["beat", "hourly", "soon", "summer", "winter"]

    local = cli("schedules", store=store, tz=EASTERN)
    assert local.returncode == 0, local.stderr
    lines = by_id(local.stdout)
    # One-offs in July and in January: each time in its own offset (DST-correct).
    assert "once at 2040-07-01T08:00:00-04:00" in lines["summer"]
    assert "next 2040-07-01T08:00:00-04:00" in lines["summer"]
    assert "once at 2041-01-15T07:00:00-05:00" in lines["winter"]
    assert lines["beat"].split()[:5] == ["beat", "active", "tick", "every", "300"]
    assert "cron 0 * * * * (Asia/Kolkata)" in lines["hourly"]
    hourly_next = datetime.fromisoformat(docs["hourly"]["next_fire_at"])
    assert hourly_next.astimezone(ZoneInfo("Asia/Kolkata")).minute == 0  # on the hour there
    assert f"next {hourly_next.astimezone(NEW_YORK).isoformat()}" in lines["hourly"]
    assert lines["hourly"].endswith("runs 0")
    assert lines["soon"].split()[1] == "done" and "next -" in lines["soon"]
    assert lines["soon"].endswith("runs 1")

    for args in (("--utc", "schedules"), ("schedules", "--utc")):
        utc = cli(*args, store=store, tz=EASTERN)
        assert utc.returncode == 0, utc.stderr
        in_utc = by_id(utc.stdout)
        assert "once at 2040-07-01T12:00:00Z" in in_utc["summer"], args
        stamp = hourly_next.astimezone(UTC).isoformat().replace("+00:00", "Z")
        assert f"next {stamp}" in in_utc["hourly"], args

    assert docs["summer"]["next_fire_at"] == "2040-07-01T12:00:00.000+00:00"
    assert (docs["summer"]["kind"], docs["beat"]["kind"], docs["hourly"]["kind"]) == (
        "once",
        "interval",
        "cron",
    )
    assert (docs["soon"]["status"], docs["soon"]["runs"], docs["hourly"]["runs"]) == ("done", 1, 0)
    assert len(docs["soon"]["executions"]) == 1


def test_pause_resume_remove_and_trigger(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    make_schedules(store)
    paused = invoke(store, "schedules", "pause", "beat")
    assert paused.exit_code == 0 and paused.stdout == "paused beat\n", paused.output
    doc = documents(store)["beat"]
    assert (doc["status"], doc["next_fire_at"]) == ("paused", None)
    assert "next -" in by_id(invoke(store, "schedules").stdout)["beat"]

    resumed = cli("schedules", "resume", "beat", store=store, tz=EASTERN)
    assert resumed.returncode == 0, resumed.stderr
    doc = documents(store)["beat"]
    assert doc["status"] == "active"
    fire = datetime.fromisoformat(doc["next_fire_at"])
    shown = fire.astimezone(NEW_YORK).isoformat(timespec="seconds")
    assert resumed.stdout == f"resumed beat: next fire {shown}\n"

    triggered = invoke(store, "schedules", "trigger", "hourly")
    assert triggered.exit_code == 0, triggered.output
    eid = triggered.stdout.strip()
    record, events = read(store, eid)
    assert (record.workflow, record.input, record.schedule_id) == (
        "tick",
        {"kind": "hourly"},
        "hourly",
    )
    started = events[0]
    assert isinstance(started, ExecutionStarted) and started.scheduled_at is not None
    assert documents(store)["hourly"]["runs"] == 0  # a trigger is not one of its fires
    keyed = [invoke(store, "schedules", "trigger", "soon", "--idempotency-key", "k") for _ in "ab"]
    assert keyed[0].stdout == keyed[1].stdout and keyed[0].exit_code == 0  # a done one too

    removed = invoke(store, "schedules", "remove", "beat")
    assert removed.exit_code == 0 and removed.stdout == "removed beat\n"
    assert "beat" not in documents(store)

    for args, code, says in (
        (("remove", "beat"), 3, "no schedule 'beat'"),
        (("pause", "nope"), 3, "no schedule 'nope'"),
        (("resume", "nope"), 3, "no schedule 'nope'"),
        (("trigger", "nope"), 3, "no schedule 'nope'"),
        (("pause", "soon"), 1, "schedule 'soon' is done"),
        (("--json", "pause", "hourly"), 2, "--json goes with the listing"),
        (("pause",), 2, "Missing argument 'SCHEDULE_ID'"),
        (("stop", "hourly"), 2, "No such command 'stop'"),
    ):
        result = invoke(store, "schedules", *args)
        assert result.exit_code == code, (args, result.output)
        assert says in result.stderr, (args, result.stderr)
    assert documents(store)["hourly"]["status"] == "active"

    async def run_it(engine: durably.Engine) -> Any:
        return await engine.wait(eid)

    result = engine_run(store, run_it)
    assert result["data"] == {"kind": "hourly"}
    assert datetime.fromisoformat(result["scheduled_at"]).timestamp() * 1000 == started.scheduled_at
