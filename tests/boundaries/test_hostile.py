"""The wake-up socket is a trust boundary: hostile datagrams, hostile requests written to
the store, against a real worker process, which stays up and serves a normal client.

On main, five of eight malformed datagrams killed the whole worker, and any process that
could write to the socket could run operator actions (``force_fail``). Now a datagram is
only "look at the inbox", and a request is data checked field by field.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import durably
from durably.core._calls import encode_request
from durably.remote._wire import client_socket_path
from durably.stores import PutCall, TakeReply

from ._helpers import Worker, client, worker


@pytest.fixture
def stranger() -> Iterator[tuple[socket.socket, str]]:
    """A bare datagram socket any local process of this user could open."""
    path = client_socket_path()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.3)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)


@pytest.fixture
def stream_socket() -> Iterator[str]:
    path = client_socket_path()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        sock.listen()
        yield path
    os.unlink(path)


def _call(method: str, args: Any, reply: str) -> dict[str, Any]:
    return {"op": "call", "eid": "t1", "method": method, "args": args, "reply": reply}


def hostile_datagrams(victim: str, reply: str, stream: str) -> list[bytes]:
    messages: list[Any] = [
        # The eight that were reproduced on main (five of them killed the worker):
        _call("retry", {"execution_id": victim, "bogus": 1}, reply),  # unexpected keyword
        _call("retry", {}, reply),  # no execution_id
        _call("schedule", {"workflow": "quick", "at": "not a date"}, reply),  # bad date
        _call("retry", [victim], reply),  # args as a list
        {"op": "watch", "eid": victim, "reply": "/tmp/" + "x" * 200},  # reply too long
        {"op": "watch", "eid": victim, "reply": ""},
        {"op": "watch", "eid": victim, "reply": stream},  # EPROTOTYPE on send
        {"op": "wake", "eid": ""},  # lmdb.BadValsizeError on main
        # ... and the rest of the channel's old strict xfails, and worse:
        _call("retry", "ab", reply),
        _call("retry", 5, reply),
        _call("force_fail", {"execution_id": victim, "reason": "hostile"}, reply),
        {"op": "watch", "eid": "", "reply": reply},
        {"op": "watch", "eid": "x" * 600, "reply": reply},
        {"op": "cancel", "eid": victim},  # no request in the store: nothing to do
        {"op": "done", "eid": victim},
    ]
    raw = [orjson.dumps(m) for m in messages]
    return [*raw, b"", b"\xff\xfe junk", b"[" * 5000, b"x" * 100_000, b"null"]


@pytest.mark.slow
def test_hostile_datagrams_leave_the_worker_serving(
    tmp_path: Path, stranger: tuple[socket.socket, str], stream_socket: str
) -> None:
    sock, reply = stranger
    with worker(tmp_path / "store") as w:
        victim = client(w.store, "start", "long", "null")
        w.status_within(victim, "sleeping", 5)
        for raw in hostile_datagrams(victim, reply, stream_socket):
            try:
                sock.sendto(raw, w.socket)
            except BlockingIOError:
                pass  # the queue is full: the worker is busy with the earlier ones
            w.until("the worker read it", lambda: w.proc.poll() is None)
        _serves_a_normal_client(w)
        assert w.record(victim).status == "sleeping"  # no datagram force-failed it
        assert w.reader.list_executions(status="failed") == []


def _serves_a_normal_client(w: Worker) -> None:
    eid = client(w.store, "start", "quick", '"still here"')
    w.status_within(eid, "completed", 5)
    assert w.record(eid).result == "still here"


BAD_REQUESTS: list[tuple[Any, Any, str]] = [
    ("retry", {"execution_id": "e", "bogus": 1}, "retry takes no argument bogus"),
    ("retry", {}, "retry needs the argument execution_id"),
    ("schedule", {"workflow": "quick", "at": "not a date"}, "is not an ISO 8601 date"),
    ("retry", ["e"], "must be a JSON object, not list"),
    ("unlink", {"path": "/"}, "unknown call 'unlink'"),
    ("force_fail", {"execution_id": "e", "reason": ["x"]}, "must be a string, not list"),
]


@pytest.mark.slow
async def test_hostile_requests_in_the_store_are_answered_with_errors(tmp_path: Path) -> None:
    with worker(tmp_path / "store") as w:
        tokens = []
        for method, args, _ in BAD_REQUESTS:
            token = secrets.token_hex(8)
            tokens.append(token)
            w.reader.apply([PutCall(token, encode_request(method, args, None, 2**62))])
        for raw in (b"not json", b"[]", orjson.dumps({"method": "retry"})):
            tokens.append(secrets.token_hex(8))
            w.reader.apply([PutCall(tokens[-1], raw)])
        # No hint at all: the worker's periodic look finds them.
        answers = [
            w.until(f"answer {t}", lambda t=t: w.reader.apply([TakeReply(t)])[0], timeout=10)
            for t in tokens
        ]
        for (_, _, phrase), answer in zip(BAD_REQUESTS, answers, strict=False):
            got = orjson.loads(answer)
            assert got["kind"] == "ConfigurationError" and phrase in got["error"], got
        for answer in answers[len(BAD_REQUESTS) :]:
            assert "call request" in orjson.loads(answer)["error"]
        _serves_a_normal_client(w)
        # And a well-formed operator action from a real client is run.
        victim = client(w.store, "start", "long", "null")
        w.status_within(victim, "sleeping", 5)
        async with durably.Client(w.reader) as c:
            await c.operate("force_fail", victim, reason="asked properly")
            assert (await c.get_execution(victim)).status is durably.Status.FAILED
            with pytest.raises(durably.ConfigurationError, match=r"takes no argument bogus"):
                await c.operate("retry", victim, bogus=1)
