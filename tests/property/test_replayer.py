"""The pure replay core alone: no trio, no store, no clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, strategies as st

from durably import CorruptRecordError, DuplicateStepError, NonDeterminismError
from durably.core._events import (
    CompensationCompleted,
    Emitted,
    Event,
    ExecutionCompleted,
    ExecutionStarted,
    Noted,
    SignalReceived,
    SignalWaiting,
    StepCompleted,
    SwitchEvaluated,
    TimerFired,
    TimerStarted,
    ValueRecorded,
    encode,
    load_all,
)
from durably.core._replay import Replayer

MAKERS: dict[str, Callable[[str], Event]] = {
    "step": lambda sid: StepCompleted(at=1, step_id=sid, result=sid),
    "sleep": lambda sid: TimerStarted(at=1, step_id=sid, wake_at=5),
    "signal": lambda sid: SignalWaiting(at=1, step_id=sid, signal="go"),
    "value": lambda sid: ValueRecorded(at=1, step_id=sid, kind="random", value=0.5),
    "emit": lambda sid: Emitted(at=1, step_id=sid, event="e", payload=None),
    "note": lambda sid: Noted(at=1, step_id=sid, message="m"),
    "switch": lambda sid: SwitchEvaluated(at=1, step_id=sid, branch_id="b", result=1),
    "compensate": lambda sid: CompensationCompleted(at=1, step_id=sid),
}


def log_of(commands: list[tuple[str, str]]) -> list[Event]:
    events: list[Event] = [ExecutionStarted(at=0, workflow="w", input=None)]
    events += [MAKERS[kind](sid) for sid, kind in commands]
    return events


def test_an_empty_log_answers_nothing_and_records_new_work() -> None:
    replayer = Replayer([], "e1")
    assert not replayer.replaying
    assert replayer.issue("a", "step") is None
    event = MAKERS["step"]("a")
    replayer.record("a", event)
    assert not replayer.replaying
    replayer.finish()


def test_recorded_commands_are_answered_in_order_with_all_their_events() -> None:
    events = [
        ExecutionStarted(at=0, workflow="w", input=1),
        TimerStarted(at=1, step_id="nap", wake_at=9),
        TimerFired(at=9, step_id="nap"),
        SignalWaiting(at=9, step_id="go", signal="go"),
        SignalReceived(at=10, step_id="go", signal="go", payload=3, mailbox_seq=0),
        ExecutionCompleted(at=11, result=3),
    ]
    replayer = Replayer(events, "e1")
    assert replayer.replaying
    assert replayer.issue("nap", "sleep") == events[1:3]
    assert replayer.issue("go", "signal") == events[3:5]
    assert not replayer.replaying
    assert replayer.issue("new", "step") is None
    replayer.finish()


def test_a_wait_in_progress_collects_the_events_recorded_after_replay() -> None:
    started = TimerStarted(at=1, step_id="nap", wake_at=9)
    replayer = Replayer([started], "e1")
    assert replayer.issue("nap", "sleep") == [started]
    fired = TimerFired(at=9, step_id="nap")
    replayer.record("nap", fired)
    assert not replayer.replaying
    replayer.finish()


def test_a_renamed_step_is_divergence_naming_position_and_both_commands() -> None:
    replayer = Replayer(log_of([("a", "step"), ("b", "step")]), "e1")
    replayer.issue("a", "step")
    with pytest.raises(NonDeterminismError) as info:
        replayer.issue("b2", "step")
    error = info.value
    assert (error.position, error.step_id) == (1, "b2")
    assert error.recorded == "step 'b'" and error.attempted == "step 'b2'"
    assert "renamed or added" in str(error) and "e1" in str(error)


def test_a_reordered_step_is_divergence_that_says_so() -> None:
    replayer = Replayer(log_of([("a", "step"), ("b", "step")]), "e1")
    with pytest.raises(NonDeterminismError, match="reordered") as info:
        replayer.issue("b", "step")
    assert info.value.position == 0


def test_a_changed_command_kind_is_divergence() -> None:
    replayer = Replayer(log_of([("a", "step")]), "e1")
    with pytest.raises(NonDeterminismError, match="the kind changed") as info:
        replayer.issue("a", "sleep")
    assert info.value.recorded == "step 'a'" and info.value.attempted == "sleep 'a'"


def test_finishing_before_the_recorded_commands_is_divergence() -> None:
    replayer = Replayer(log_of([("a", "step"), ("b", "sleep")]), "e1")
    replayer.issue("a", "step")
    with pytest.raises(NonDeterminismError, match="finished before reaching it") as info:
        replayer.finish()
    assert (info.value.position, info.value.step_id) == (1, "b")


def test_a_step_id_used_twice_is_refused_on_first_run_and_on_replay() -> None:
    fresh = Replayer([], "e1")
    fresh.issue("a", "step")
    fresh.record("a", MAKERS["step"]("a"))
    with pytest.raises(DuplicateStepError, match="'a' is used twice"):
        fresh.issue("a", "step")
    replaying = Replayer(log_of([("a", "step")]), "e1")
    replaying.issue("a", "step")
    with pytest.raises(DuplicateStepError):
        replaying.issue("a", "step")


commands = st.lists(
    st.tuples(st.text("abcxyz", min_size=1, max_size=3), st.sampled_from(sorted(MAKERS))),
    min_size=1,
    max_size=12,
    unique_by=lambda c: c[0],
)


@given(commands)
def test_the_same_code_replays_its_whole_log(recorded: list[tuple[str, str]]) -> None:
    events = log_of(recorded)
    replayer = Replayer(events, "e1")
    for index, (sid, kind) in enumerate(recorded):
        assert replayer.replaying
        assert replayer.issue(sid, kind) == [events[index + 1]]
    assert not replayer.replaying
    replayer.finish()


@given(commands, st.data())
def test_changed_code_diverges_exactly_where_it_first_differs(
    recorded: list[tuple[str, str]], data: st.DataObject
) -> None:
    kinds = ["rename", "remove", "kind"] + (["swap"] if len(recorded) > 1 else [])
    change = data.draw(st.sampled_from(kinds))
    index = data.draw(st.integers(0, len(recorded) - 1))
    code = list(recorded)
    sid, kind = code[index]
    if change == "rename":
        code[index] = (sid + "-renamed", kind)
    elif change == "remove":
        del code[index]
    elif change == "kind":
        code[index] = (sid, next(k for k in sorted(MAKERS) if k != kind))
    else:
        other = data.draw(st.integers(0, len(recorded) - 1).filter(lambda i: i != index))
        code[index], code[other] = code[other], code[index]
        index = min(index, other)
    replayer = Replayer(log_of(recorded), "e1")
    with pytest.raises(NonDeterminismError) as info:
        for sid, kind in code:
            replayer.issue(sid, kind)
        replayer.finish()
    assert info.value.position == index
    assert info.value.recorded == f"{recorded[index][1]} {recorded[index][0]!r}"


@given(commands, st.data())
def test_a_log_read_as_fields_replays_as_its_events_do(
    recorded: list[tuple[str, str]], data: st.DataObject
) -> None:
    # The engine replays the fields of its log (``load_all``), not Events: every answer,
    # divergence and duplicate must be the one the Events give.
    events = log_of(recorded)
    code = list(recorded)
    if data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(code) - 1))
        code.insert(index, (code[index][0] if data.draw(st.booleans()) else "new", "step"))

    def answers(log: list[Any], last: bool) -> list[Any]:
        replayer, out = Replayer(log, "e1"), []
        try:
            for sid, kind in code:
                if last and kind == "step":
                    fields = replayer.issue_last(sid, kind)
                    out.append(None if fields is None else fields["result"])
                else:
                    out.append(replayer.issue(sid, kind))
            replayer.finish()
        except (NonDeterminismError, DuplicateStepError) as exc:
            out.append((type(exc), str(exc)))
        return out

    fields = load_all([encode(event) for event in events], "e1")
    expected = answers(events, False)
    assert answers(fields, False) == expected
    assert answers(fields, True) == answers(events, True)


def test_a_log_read_as_fields_is_checked_as_decoding_it_is() -> None:
    step = StepCompleted(at=1, step_id="a", result=[1])
    assert load_all([encode(step)]) == [orjson.loads(encode(step))]
    # Written before a field with a default existed: completed, as its class would.
    old = orjson.loads(encode(step))
    del old["attempt"]
    assert load_all([orjson.dumps(old)])[0]["attempt"] == 1
    for bad in ({**old, "later": 1}, {"t": "unheard.of", "at": 1}, {"at": 1}, [1], "x"):
        with pytest.raises(CorruptRecordError, match="newer durably or is damaged"):
            load_all([orjson.dumps(bad)], "e1")
