"""The checks a client's call passes before the worker runs it (engine/core/_calls.py):
the table of calls matches the real signatures, and every refusal says what is wrong."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest

from durably.core._calls import CALLS, check_call, decode_reply, decode_request, encode_reply
from durably.core._errors import ConfigurationError, OperatorError
from durably.core._records import OPERATOR_ACTIONS, SCHEDULE_CALLS
from durably.runtime._gateway import Gateway
from durably.runtime._operator import Operator


def test_the_table_holds_exactly_what_a_client_may_ask_the_worker() -> None:
    assert set(CALLS) == set(OPERATOR_ACTIONS) | set(SCHEDULE_CALLS)


@pytest.mark.parametrize("method", sorted(CALLS))
def test_each_call_takes_the_arguments_of_what_it_runs(method: str) -> None:
    # Operator actions run on engine.operator (the execution id first); schedule calls
    # are the face's own methods. The table must not drift from either.
    target = getattr(Operator if method in OPERATOR_ACTIONS else Gateway, method)
    params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"]
    names = {p.name: p for p in params}
    spec = {arg.name: arg for arg in CALLS[method]}
    assert set(spec) == set(names), method
    for name, arg in spec.items():
        required = names[name].default is inspect.Parameter.empty
        assert arg.required == required, (method, name)


def test_a_good_call_is_returned_ready_to_run() -> None:
    method, args = check_call(
        "schedule",
        {"workflow": "wf", "input": {"a": [1]}, "at": "2026-01-31T09:00:00+00:00", "id": None},
    )
    assert method == "schedule"
    assert args == {
        "workflow": "wf",
        "input": {"a": [1]},
        "at": datetime(2026, 1, 31, 9, tzinfo=UTC),
        "id": None,
    }  # absent optionals are left to the method's defaults
    assert check_call("update_schedule", {"schedule_id": "s", "input": None}) == (
        "update_schedule",
        {"schedule_id": "s", "input": None},  # given, so "set the input to None"
    )


@pytest.mark.parametrize(
    ("method", "args", "phrase"),
    [
        ("eval", {}, "unknown call 'eval'; the worker runs cancel, ensure_schedule"),
        (["retry"], {}, "unknown call"),
        ("retry", None, "arguments of retry must be a JSON object, not NoneType"),
        ("retry", {}, "retry needs the argument execution_id"),
        ("retry", {"execution_id": "e", "why": 1}, "retry takes no argument why; it takes"),
        ("force_fail", {"execution_id": "e"}, "force_fail needs the argument reason"),
        ("force_fail", {"execution_id": "e", "reason": None}, "must be a string, not null"),
        ("skip_step", {"execution_id": "e", "step_id": 3}, "step_id of skip_step must be"),
        ("schedule", {"workflow": "w", "at": "31/01/2026"}, "is not an ISO 8601 date"),
        ("schedule", {"workflow": "w", "delay": [1]}, "a number of seconds, not list"),
        ("ensure_schedule", {"workflow": "w", "id": "s", "interval": False}, "not bool"),
    ],
)
def test_a_bad_call_is_refused_saying_what_is_wrong(method: Any, args: Any, phrase: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_call(method, args)
    assert phrase in str(caught.value)


def test_a_request_with_a_bad_reply_address_is_still_run_without_the_wake_up() -> None:
    body = b'{"method": "retry", "args": {}, "reply": "relative", "deadline_ms": 1}'
    assert decode_request(body, 100).reply is None
    body = b'{"method": "retry", "args": {}, "reply": "/tmp/c", "deadline_ms": 1}'
    assert decode_request(body, 100).reply == "/tmp/c"


def test_answers_round_trip_and_a_bad_one_is_refused() -> None:
    assert decode_reply(encode_reply("s1")).value == "s1"
    assert decode_reply(encode_reply({"not": "a string"})).value is None
    refused = decode_reply(encode_reply(error=OperatorError("no: " + "x" * 10_000)))
    assert refused.kind == "OperatorError" and len(refused.error or "") == 4000
    for body in (b"junk", b"[]", b'{"value": 1}'):
        with pytest.raises(ConfigurationError, match=r"the worker's answer"):
            decode_reply(body)
