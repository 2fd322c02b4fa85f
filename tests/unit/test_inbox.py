"""The worker's inbox (engine/remote/_listener.py) and calls through the store
(``ClientChannel.call``): what a lost hint costs, what a call's request may be, and what
the caller hears back. A ``Listener`` over a ``MemoryStore`` (a real committer) acts
through a recording ``WorkerPort``; the periodic look runs on the real clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
import trio.testing

from durably.core._calls import REPLY_TTL_MS, encode_request
from durably.core._errors import (
    ConfigurationError,
    CorruptRecordError,
    DurablyError,
    OperatorError,
    PayloadError,
)
from durably.core._records import INBOX_START
from durably.remote._channel import ClientChannel
from durably.remote._wire import bind, receive
from durably.stores import MemoryStore, Notify, PutCall, PutReply, TakeInbox, TakeReply

from ._listener_harness import Harness, open_client, put, sock_path, until

KB = 1024


async def call(h: Harness, client: ClientChannel, method: str, args: dict[str, Any]) -> Any:
    return await client.call(
        h.commit,
        h.worker.parts.clock.now_ms,
        method,
        args,
        max_payload_bytes=h.worker.parts.settings.max_payload_bytes,
        poll_interval=1.0,
        store_path="/the/store",
    )


async def answer_of(h: Harness, token: str) -> dict[str, Any]:
    """The stored answer to ``token`` (taken), as the client would read it."""
    [raw] = await h.commit([TakeReply(token)])
    assert isinstance(raw, bytes), raw
    answer: dict[str, Any] = orjson.loads(raw)
    return answer


# --- the periodic look: every hint lost ---


async def test_with_every_hint_lost_the_periodic_look_finds_each_write(tmp_path: Path) -> None:
    h = Harness(tmp_path, poll=0.05)
    put(h.store, "e1", "pending")
    put(h.store, "e2", "pending")
    async with h.running():
        await h.commit([Notify("e1", INBOX_START)])  # no datagram at all
        await until(lambda: h.worker.calls == [("spawn", "e1", None)])
        await h.commit([Notify("e2", INBOX_START)])
        await until(lambda: len(h.worker.calls) == 2)
    assert h.worker.calls[1] == ("spawn", "e2", None)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def inbox_waiting(self) -> bool:
        self.looks += 1
        return super().inbox_waiting()


async def test_an_idle_worker_looks_with_one_read_and_writes_nothing(tmp_path: Path) -> None:
    store = CountingStore()
    h = Harness(tmp_path, store=store, poll=0.01)
    async with h.running():
        await until(lambda: store.looks >= 20)
        assert h.worker.parts.committer.statistics().batches == 0
        assert h.listener.looks == 0 and h.worker.calls == []


async def test_what_was_written_while_no_worker_ran_is_taken_at_start(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    put(h.store, "early", "pending")
    h.store.apply([Notify("early", INBOX_START)])
    async with h.running():
        await trio.testing.wait_all_tasks_blocked()
        assert h.worker.calls == [("spawn", "early", None)]


async def test_a_closing_worker_leaves_the_inbox_to_its_next_start(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.worker.closing = True
    h.store.apply([Notify("probe", INBOX_START)])
    async with h.running():
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
    assert h.worker.calls == [] and h.store.inbox_waiting()


# --- calls: answered through the store ---


async def test_a_call_is_answered_by_the_workers_answer(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with h.running(), open_client(h.path) as client:
        value = await call(h, client, "pause_schedule", {"schedule_id": "s1"})
    assert value == "answer to pause_schedule"
    assert h.answers == [("pause_schedule", {"schedule_id": "s1"})]
    assert h.store.list_schedules() == []  # nothing else was written


async def test_the_answers_durably_error_is_raised_in_the_client(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def answer(method: str, args: dict[str, Any]) -> Any:
        raise OperatorError(f"cannot {method} {args['execution_id']}")

    h.answer = answer
    async with h.running(), open_client(h.path) as client:
        with pytest.raises(OperatorError, match=r"^cannot retry e1$"):
            await call(h, client, "retry", {"execution_id": "e1"})
        h.answer = h._answer  # the listener lives on
        assert await call(h, client, "retry", {"execution_id": "e2"}) == "answer to retry"


async def test_concurrent_calls_each_get_their_own_answer(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    release = {"s1": trio.Event(), "s2": trio.Event()}

    async def answer(method: str, args: dict[str, Any]) -> Any:
        await release[args["schedule_id"]].wait()
        return f"{method}:{args['schedule_id']}"

    h.answer = answer
    got: dict[str, Any] = {}
    async with h.running(), open_client(h.path) as client:

        async def one(sid: str) -> None:
            got[sid] = await call(h, client, "remove_schedule", {"schedule_id": sid})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "s1")
            nursery.start_soon(one, "s2")
            await trio.testing.wait_all_tasks_blocked()
            release["s2"].set()  # answered out of order
            await trio.testing.wait_all_tasks_blocked()
            assert got == {"s2": "remove_schedule:s2"}
            release["s1"].set()
    assert got == {"s1": "remove_schedule:s1", "s2": "remove_schedule:s2"}


@pytest.mark.parametrize("size", [70 * KB, 100 * KB, 300 * KB])
async def test_a_call_with_large_args_is_answered(
    tmp_path: Path, size: int, autojump_clock: trio.testing.MockClock
) -> None:
    # On main a call over 64 KiB was cut by the listener's recv(65536) and lost (over
    # about 208 KiB, send raised OSError: Message too long): the store has no such limit.
    h = Harness(tmp_path)
    async with h.running(), open_client(h.path) as client:
        args = {"workflow": "wf", "input": "x" * size, "delay": 1.0}
        assert await call(h, client, "schedule", args) == "answer to schedule"
    assert h.answers == [("schedule", args)]


async def test_a_call_over_max_payload_bytes_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, max_payload_bytes=200 * KB)
    async with h.running(), open_client(h.path) as client:
        args = {"workflow": "wf", "input": "x" * 300 * KB, "delay": 1.0}
        with pytest.raises(
            PayloadError,
            match=r"schedule request is \d+ bytes encoded, over max_payload_bytes \(204800\)",
        ):
            await call(h, client, "schedule", args)
    assert h.answers == [] and not h.store.inbox_waiting()


async def test_the_worker_refuses_a_request_over_its_own_max_payload_bytes(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, max_payload_bytes=10 * KB)
    request = encode_request("schedule", {"workflow": "wf", "input": "x" * 20 * KB}, None, 2**60)
    async with h.running():
        await h.commit([PutCall("big", request)])
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
        answer = await answer_of(h, "big")
    assert answer["kind"] == "PayloadError"
    assert "over the worker's max_payload_bytes (10240); nothing was run" in answer["error"]
    assert h.answers == []


# --- calls: a request is checked field by field, never trusted ---

BAD_REQUESTS: list[tuple[str, Any, str]] = [
    # (why, the args, a phrase of the answer's error)
    ("args-a-list", [1, 2], "must be a JSON object, not list"),
    ("args-a-string", "ab", "must be a JSON object, not str"),
    ("args-a-number", 5, "must be a JSON object, not int"),
    ("args-without-execution-id", {}, "retry needs the argument execution_id"),
    ("an-unexpected-keyword", {"execution_id": "e1", "force": True}, "takes no argument force"),
    ("a-mistyped-argument", {"execution_id": 7}, "execution_id of retry must be a string"),
    ("a-mistyped-by", {"execution_id": "e1", "by": ["x"]}, "by of retry must be a string"),
]


@pytest.mark.parametrize(("why", "args", "phrase"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
async def test_a_malformed_call_is_refused_with_a_durably_error(
    tmp_path: Path, why: str, args: Any, phrase: str
) -> None:
    h = Harness(tmp_path)
    async with h.running(), open_client(h.path) as client:
        request = encode_request("retry", args, client.path, 2**60)
        await h.commit([PutCall("t1", request)])
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
        answer = await answer_of(h, "t1")
        assert answer["kind"] == "ConfigurationError"
        assert phrase in answer["error"]
        assert h.answers == []
        # The same through the client's own call: refused the same way.
        with pytest.raises(ConfigurationError, match=phrase.split(" of ")[0]):
            await call(h, client, "retry", args)
        await h.still_serving()


@pytest.mark.parametrize(
    ("method", "args", "phrase"),
    [
        ("unlink", {"path": "/"}, "unknown call 'unlink'"),
        (None, {}, "unknown call 'None'"),
        ("schedule", {"workflow": "wf", "at": "tomorrow"}, "at of schedule is not an ISO 8601"),
        ("schedule", {"workflow": "wf", "at": 5}, "at of schedule must be an ISO 8601 date"),
        ("schedule", {"workflow": "wf", "delay": True}, "must be a number of seconds, not bool"),
        ("schedule", {"workflow": "wf", "delay": "1"}, "must be a number of seconds, not str"),
        ("ensure_schedule", {"workflow": "wf"}, "ensure_schedule needs the argument id"),
    ],
)
async def test_an_unknown_call_or_a_bad_argument_is_refused(
    tmp_path: Path, method: Any, args: Any, phrase: str
) -> None:
    h = Harness(tmp_path)
    async with h.running():
        await h.commit([PutCall("t1", encode_request(method, args, None, 2**60))])
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
        answer = await answer_of(h, "t1")
        assert answer["kind"] == "ConfigurationError" and phrase in answer["error"]
        await h.still_serving()
    assert h.answers == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"method": "retry"}',
        orjson.dumps({"method": "retry", "args": {}, "reply": None, "deadline_ms": "soon"}),
    ],
    ids=["not-json", "a-list", "missing-fields", "bad-deadline"],
)
async def test_a_request_that_is_not_one_is_refused(tmp_path: Path, body: bytes) -> None:
    h = Harness(tmp_path)
    async with h.running():
        await h.commit([PutCall("t1", body)])
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
        answer = await answer_of(h, "t1")
        assert answer["kind"] == "ConfigurationError" and "call request" in answer["error"]
        await h.still_serving()


async def test_an_answer_that_raises_something_else_is_a_durably_error(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def answer(method: str, args: dict[str, Any]) -> Any:
        return {}["missing"]  # a bug in the worker: KeyError

    h.answer = answer
    async with h.running(), open_client(h.path) as client:
        with pytest.raises(DurablyError, match=r"the worker failed running the call \(KeyError"):
            await call(h, client, "retry", {"execution_id": "e1"})
        h.answer = h._answer
        await h.still_serving()


@pytest.mark.parametrize("kind", ["NotAnError", "os", "__builtins__", "ValueError"])
async def test_an_unknown_error_kind_from_the_worker_is_a_durably_error(
    tmp_path: Path, kind: str
) -> None:
    # A fake worker at the socket answers through the store itself.
    h = Harness(tmp_path)
    worker_path = sock_path(tmp_path, "w")
    with await bind(worker_path) as worker:
        async with h.running(), open_client(worker_path) as client:

            async def serve() -> None:
                assert await receive(worker) is not None  # the hint
                [entries] = await h.commit([TakeInbox(10)])
                [entry] = entries
                answer = orjson.dumps({"value": None, "error": "boom", "kind": kind})
                await h.commit([PutReply(entry.key, 0, answer)])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                with pytest.raises(DurablyError, match=r"^boom$") as caught:
                    await call(h, client, "retry", {"execution_id": "e1"})
    assert type(caught.value) is DurablyError


# --- calls: nobody answers ---


async def test_without_a_worker_a_call_is_withdrawn_after_30_s(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness(tmp_path)
    async with h.running(), open_client(sock_path(tmp_path, "nobody")) as client:
        h.worker.closing = True  # the listener takes nothing: as good as no worker
        start = trio.current_time()
        with pytest.raises(
            DurablyError,
            match=r"did not take the retry request within 30 s .* withdrawn and nothing was done",
        ):
            await call(h, client, "retry", {"execution_id": "e1"})
        assert trio.current_time() - start == pytest.approx(30, abs=1)
    assert not h.store.inbox_waiting()  # withdrawn: no later worker runs it
    assert h.answers == []


async def test_a_call_taken_but_never_answered_says_to_check_the_state(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    h = Harness(tmp_path)

    async def answer(method: str, args: dict[str, Any]) -> Any:
        await trio.sleep_forever()

    h.answer = answer
    async with h.running(), open_client(h.path) as client:
        with pytest.raises(
            DurablyError,
            match=r"took the retry request but did not answer within 30 s; check the state",
        ):
            await call(h, client, "retry", {"execution_id": "e1"})


async def test_a_request_whose_caller_gave_up_is_not_run(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with h.running():
        past = h.worker.parts.clock.now_ms() - 1
        await h.commit(
            [PutCall("late", encode_request("retry", {"execution_id": "e"}, None, past))]
        )
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
        assert (await h.commit([TakeReply("late")])) == [None]
        await h.still_serving()
    assert h.answers == []


async def test_answers_nobody_took_are_expired_by_the_next_answer(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with h.running(), open_client(h.path) as client:
        now = h.worker.parts.clock.now_ms()
        await h.commit(
            [PutReply("stale", now - REPLY_TTL_MS - 1, b"{}"), PutReply("fresh", now, b"{}")]
        )
        await call(h, client, "retry", {"execution_id": "e1"})
        assert await h.commit([TakeReply("stale"), TakeReply("fresh")]) == [None, b"{}"]


async def test_a_damaged_request_or_answer_is_an_error_not_a_stuck_inbox(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    async with h.running():
        await h.commit([PutCall("t1", b"{}")])
        # Flip a byte of the stored request: its frame's checksum fails.
        table = h.store._tables["calls"]  # type: ignore[attr-defined]
        raw = table.data[b"t1"]
        table.data[b"t1"] = raw[:-1] + bytes([raw[-1] ^ 0xFF])
        h.hint()
        await trio.testing.wait_all_tasks_blocked()
        answer = await answer_of(h, "t1")
        assert answer["kind"] == "CorruptRecordError"
        assert not h.store.inbox_waiting()
        await h.commit([PutReply("t2", 0, b"{}")])
        replies = h.store._tables["replies"]  # type: ignore[attr-defined]
        replies.data[b"t2"] = replies.data[b"t2"][:-1] + b"!"
        [taken] = await h.commit([TakeReply("t2")])
        assert isinstance(taken, CorruptRecordError)
        assert await h.commit([TakeReply("t2")]) == [None]  # removed all the same
        await h.still_serving()
