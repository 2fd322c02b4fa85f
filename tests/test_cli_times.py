"""Times on the command line: ISO 8601 with the zone's offset, local by default (``TZ`` of
the console script's process), UTC with ``--utc`` (on the group or on the command),
never epoch milliseconds in text; ``--json`` keeps the stored integers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
from cli_ops_app import cli, engine_run, nap, new_store, read

import durably
from durably._cli_common import TIME_FIELDS
from durably.core import _events
from durably.core._events import TimerStarted

#: India has no DST: +05:30 all year, and its POSIX form needs no tz database.
INDIA, INDIA_OFFSET = "IST-05:30", timezone(timedelta(hours=5, minutes=30))
#: A 13-digit number standing alone: epoch milliseconds shown raw.
RAW_MS = re.compile(r"(?<![0-9a-f])\d{13}(?![0-9a-f])")

Settle = Any


def shown(ms: int, zone: timezone, *, millis: bool = False) -> str:
    text = datetime.fromtimestamp(ms / 1000, zone).isoformat(
        timespec="milliseconds" if millis else "seconds"
    )
    return text.replace("+00:00", "Z") if zone is UTC else text


def test_every_time_field_of_every_event_is_shown_as_a_time() -> None:
    events = [
        c for c in vars(_events).values() if isinstance(c, type) and issubclass(c, _events.Event)
    ]
    timed = {
        f.name
        for c in events
        for f in attrs.fields(c)
        if f.name != "at" and (f.name.endswith("_at") or f.name == "deadline")
    }
    assert timed == TIME_FIELDS


def test_show_and_list_are_local_or_utc_and_json_keeps_epoch_ms(
    tmp_path: Path, settle: Settle
) -> None:
    store = new_store(tmp_path)

    async def setup(engine: durably.Engine) -> str:
        eid = await engine.start(nap, 3600)
        await settle(engine, eid, "sleeping")
        return eid

    eid = engine_run(store, setup)
    record, events = read(store, eid)
    timer = next(e for e in events if isinstance(e, TimerStarted))

    local = cli("show", eid, store=store, tz=INDIA)
    assert local.returncode == 0, local.stderr
    assert RAW_MS.search(local.stdout) is None, local.stdout
    assert f"wake_at={shown(timer.wake_at, INDIA_OFFSET, millis=True)}" in local.stdout
    assert f"  wakes at: {shown(timer.wake_at, INDIA_OFFSET)}\n" in local.stdout
    timeline = local.stdout.split("timeline:\n")[1].splitlines()
    assert [line.split()[0] for line in timeline] == [
        shown(e.at, INDIA_OFFSET, millis=True) for e in events
    ]
    assert local.stdout.splitlines()[0].endswith(shown(record.created_ms, INDIA_OFFSET))

    group, command = (
        cli(*args, store=store, tz=INDIA)
        for args in (("--utc", "show", eid), ("show", eid, "--utc"))
    )
    assert group.stdout == command.stdout and group.returncode == 0
    assert f"wake_at={shown(timer.wake_at, UTC, millis=True)}" in group.stdout
    assert "+05:30" not in group.stdout and RAW_MS.search(group.stdout) is None

    as_json = json.loads(cli("show", eid, "--json", "--utc", store=store, tz=INDIA).stdout)
    started = next(t for t in as_json["timeline"] if t["event"] == "timer.started")
    assert started["wake_at"] == timer.wake_at and started["at"] == timer.at  # epoch ms

    rows = cli("list", store=store, tz=INDIA).stdout.splitlines()
    assert rows == [
        f"{eid}  sleeping            nap                  {shown(record.created_ms, INDIA_OFFSET)}"
    ]
    assert cli("--utc", "list", store=store, tz=INDIA).stdout.split()[-1] == shown(
        record.created_ms, UTC
    )


def test_show_s_queue_times_follow_the_zone(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    queued = cli("enqueue", "mail", "echo", "--delay", "90", store=store)
    assert queued.returncode == 0, queued.stderr
    record, _ = read(store, queued.stdout.strip())
    assert record.not_before is not None
    text = cli("show", record.id, store=store, tz=INDIA).stdout
    assert f"  not before: {shown(record.not_before, INDIA_OFFSET)}\n" in text
    in_utc = cli("show", record.id, "--utc", store=store, tz=INDIA).stdout
    assert f"  not before: {shown(record.not_before, UTC)}\n" in in_utc
    document = json.loads(cli("show", record.id, "--json", store=store, tz=INDIA).stdout)
    assert document["queue"]["not_before"] == shown(record.not_before, UTC, millis=True)
