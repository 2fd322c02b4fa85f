"""The CLI's JSON arguments from a file (``@FILE``) and from standard input (``-``), with
the real console script in subprocesses: a payload bigger than one argument may be, up
to the default ``max_payload_bytes``, and clear refusals past it or for what JSON cannot
hold (exit code 2, nothing sent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

import durably
from durably.core._codec import MAX_DEPTH
from durably.stores import LmdbStore

LIMIT = 16 * 1024 * 1024  # Client's default max_payload_bytes, which the CLI applies


def cli(*args: str, store: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DURABLY_STORE": str(store)}
    result = subprocess.run(
        [sys.executable, "-m", "durably", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


@durably.workflow("measure")
async def measure(ctx: durably.Context, _: None) -> int:
    payload = await ctx.wait_for_signal("data", step_id="data")
    return len(orjson.dumps(payload))


async def _start(store: Path) -> str:
    async with durably.Engine(store, workflows=[measure]) as engine:
        return await engine.start(measure)


async def _result(store: Path, eid: str) -> Any:
    async with durably.Engine(store, workflows=[measure]) as engine:
        return await engine.wait(eid, timeout=60)


def waiting_execution(store: Path) -> str:
    eid = trio.run(_start, store)
    reader = LmdbStore(store, readonly=True)
    try:
        record = reader.get_execution(eid)
        assert record is not None and record.waiting_signal == "data"
    finally:
        reader.close()
    return eid


def mailbox(store: Path, eid: str) -> list[Any]:
    reader = LmdbStore(store, readonly=True)
    try:
        return [entry.payload for entry in reader.mailbox(eid)]
    finally:
        reader.close()


@pytest.mark.slow
def test_a_payload_too_big_for_an_argument_goes_through_a_file_and_stdin(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"
    eid = waiting_execution(store)
    payload = {"rows": ["x" * 1000] * 3000}  # 3 MB: far over one argument's 128 KiB
    text = json.dumps(payload, indent=2)  # as a person or a tool writes it
    with pytest.raises(OSError, match="Argument list too long"):
        cli("signal", eid, "data", text, store=store)  # what an argument cannot carry

    file = tmp_path / "payload.json"
    file.write_text(text)
    sent = cli("signal", eid, "data", f"@{file}", store=store)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() in ("delivered", "buffered")
    assert mailbox(store, eid) == [payload]
    assert trio.run(_result, store, eid) == len(orjson.dumps(payload))

    second = waiting_execution(store)
    piped = cli("signal", second, "data", "-", store=store, stdin=text.encode())
    assert piped.returncode == 0, piped.stderr
    assert trio.run(_result, store, second) == len(orjson.dumps(payload))


@pytest.mark.slow
def test_the_default_payload_limit_holds_for_files(tmp_path: Path) -> None:
    store = tmp_path / "s"
    eid = waiting_execution(store)
    # A JSON string of n characters encodes to n + 2 bytes.
    at_limit = tmp_path / "at-limit.json"
    at_limit.write_text(json.dumps("y" * (LIMIT - 2)))
    over = tmp_path / "over.json"
    over.write_text(json.dumps("y" * (LIMIT - 1)))

    refused = cli("signal", eid, "data", f"@{over}", store=store)
    assert refused.returncode == 2
    assert f"{LIMIT + 1} bytes encoded, over max_payload_bytes ({LIMIT})" in refused.stderr
    assert "nothing was sent" in refused.stderr
    assert mailbox(store, eid) == []

    taken = cli("signal", eid, "data", f"@{at_limit}", store=store)
    assert taken.returncode == 0, taken.stderr
    assert [len(p) for p in mailbox(store, eid)] == [LIMIT - 2]


@pytest.mark.slow
def test_bad_payloads_are_refused_clearly_before_anything_is_sent(tmp_path: Path) -> None:
    store = tmp_path / "s"
    eid = waiting_execution(store)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 2_000 + "]" * 2_000)
    huge_text = tmp_path / "huge.json"
    with open(huge_text, "wb") as f:  # past what any payload's text may be: refused unread
        f.truncate(8 * LIMIT + 1)
    cases = [
        (["NaN"], "NaN is not JSON"),
        (["[1, Infinity]"], "Infinity is not JSON"),
        (["18446744073709551616"], "64-bit range"),
        (["{nope"], "is not valid JSON"),
        ([f"@{tmp_path / 'missing.json'}"], "cannot read PAYLOAD_JSON"),
        ([f"@{deep}"], "nested"),
        ([f"@{huge_text}"], "over max_payload_bytes"),
        (["-"], "is not valid JSON"),  # empty standard input
    ]
    for args, phrase in cases:
        refused = cli("signal", eid, "data", *args, store=store, stdin=b"")
        assert refused.returncode == 2, (args, refused.stderr)
        assert phrase in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert mailbox(store, eid) == []
    deep.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)  # at the codec's limit: fine
    assert cli("signal", eid, "data", f"@{deep}", store=store).returncode == 0


@pytest.mark.slow
def test_describe_takes_its_input_from_a_file_or_stdin(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(
        "import durably\n"
        "@durably.workflow('pick')\n"
        "async def pick(ctx, data: dict) -> None:\n"
        "    if data['fast']:\n"
        "        await ctx.step('quick', print)\n"
        "    else:\n"
        "        await ctx.sleep(5, step_id='slow')\n"
    )
    (tmp_path / "input.json").write_text('{"fast": true}')

    def describe(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "durably", "describe", "flows:pick", *args],
            input=stdin,
            capture_output=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    from_file = describe("--input", "@input.json")
    assert from_file.returncode == 0, from_file.stderr
    assert b"quick" in from_file.stdout and b"slow" not in from_file.stdout
    from_stdin = describe("--input", "-", stdin=b'{"fast": false}')
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert b"slow" in from_stdin.stdout and b"quick" not in from_stdin.stdout
    bad = describe("--input", "[NaN]")
    assert bad.returncode == 2 and b"--input is not valid JSON" in bad.stderr
