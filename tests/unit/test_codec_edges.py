"""The codec at its edges (engine/core/_codec.py, engine/core/_events.py's encoding): what
JSON cannot hold is refused with a PayloadError that names the limit and what to do; what
it can hold comes back the same on the first run and on every replay.

"The first run" is ``roundtrip`` (what ``ctx.step`` returns); "the replay" is what a
replay returns: the stored shape, encoded in its event, decoded, and loaded again.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import given, strategies as st

import durably
from durably.core import _codec
from durably.core._codec import MAX_DEPTH, MAX_INT, MIN_INT, check, dump, load, roundtrip, shape
from durably.core._errors import PayloadError
from durably.core._events import (
    Emitted,
    ExecutionStarted,
    Noted,
    StepCompleted,
    decode,
    encode,
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    S = 1
    L = 3


class Ratio(enum.Enum):
    BAD = float("nan")


@attrs.define
class Box:
    label: str
    content: Any


@attrs.define
class Raw:
    content: object


@dataclasses.dataclass
class Pair:
    left: Any
    right: Any


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep (``[]`` is one level)."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def replayed(first_shape: Any, tp: Any = Any) -> Any:
    """What a replay returns for a step whose result was stored as ``first_shape``."""
    raw = encode(StepCompleted(at=1, step_id="s", result=first_shape))
    event = decode(raw)
    assert isinstance(event, StepCompleted)
    return load(event.result, tp, "replay")


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (``-0.0`` is not ``0.0``)."""
    return type(a) is type(b) and repr(a) == repr(b)


# --- NaN and the infinities: refused, wherever they sit ---

NON_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    "wrap",
    [
        lambda x: x,
        lambda x: [1.5, x],
        lambda x: {"a": None, "b": {"c": (x,)}},
        lambda x: Box("b", x),
        lambda x: Pair(None, [x]),
        lambda x: {"s": {x}},
    ],
    ids=["bare", "list", "dict-with-none", "attrs", "dataclass", "set"],
)
@pytest.mark.parametrize("call", ["dump", "shape", "roundtrip", "check"])
def test_a_non_finite_float_is_refused_not_turned_into_none(
    bad: float, wrap: Any, call: str
) -> None:
    value = wrap(bad)
    with pytest.raises(PayloadError, match="NaN or infinity, which JSON cannot represent"):
        if call == "roundtrip":
            roundtrip(value, Any, "result of step 'x'")
        elif call == "check":
            check(value, Any, "result of step 'x'")
        else:
            getattr(_codec, call)(value, "result of step 'x'")


def test_an_enum_whose_value_is_nan_is_refused() -> None:
    with pytest.raises(PayloadError, match="NaN or infinity"):
        shape({"r": Ratio.BAD}, "here")


def test_an_object_typed_field_is_checked_too() -> None:
    with pytest.raises(PayloadError, match="the float inf"):
        shape(Raw({"x": [math.inf]}), "here")
    # and shaped as an Any field would be: keys as text, sets as lists
    assert shape(Raw({1: {2}}), "here") == {"content": {"1": [2]}}


def test_none_beside_finite_floats_is_kept() -> None:
    value = {"a": None, "b": [0.5, None, -0.0], "c": "null", "when": datetime(2030, 1, 1)}
    shaped, first = roundtrip(value, Any, "here")
    assert replayed(shaped) == first
    assert first == {"a": None, "b": [0.5, None, -0.0], "c": "null", "when": "2030-01-01T00:00:00"}
    assert same(first["b"][2], -0.0)


EDGE_FLOATS = [
    0.0,
    -0.0,
    5e-324,  # the smallest subnormal
    -5e-324,
    2.2250738585072014e-308,  # the smallest normal
    sys.float_info.max,
    -sys.float_info.max,
    sys.float_info.epsilon,
    1 / 3,
    2.0**53 + 2,
    1e16,
    123456789.123456789,
]


@pytest.mark.parametrize("value", EDGE_FLOATS)
def test_edge_floats_come_back_bit_for_bit(value: float) -> None:
    shaped, first = roundtrip(value, Any, "here")
    assert same(first, value) and same(replayed(shaped), value)
    shaped, first = roundtrip(value, float, "here")
    assert same(first, value) and same(replayed(shaped, float), value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_agrees_on_first_run_and_replay(value: float) -> None:
    shaped, first = roundtrip([value], Any, "here")
    assert same(first[0], value)
    assert same(replayed(shaped), first)


def _non_finite(sign: int, mantissa: int) -> float:
    """The float with every exponent bit set: an infinity (mantissa 0) or a NaN."""
    value: float = struct.unpack(">d", struct.pack(">Q", sign << 63 | 0x7FF << 52 | mantissa))[0]
    return value


@given(st.builds(_non_finite, st.integers(0, 1), st.integers(0, 2**52 - 1)))
def test_every_non_finite_float_is_refused(value: float) -> None:
    assert not math.isfinite(value)  # signalling and quiet NaNs, with any payload, and inf
    with pytest.raises(PayloadError, match="NaN or infinity"):
        roundtrip({"x": [value]}, Any, "here")


# --- integers past 64 bits ---


@pytest.mark.parametrize("value", [MIN_INT, -1, 0, 2**63 - 1, 2**63, MAX_INT])
def test_integers_of_the_64_bit_ranges_are_kept(value: int) -> None:
    assert check(value, int, "here") == value
    shaped, first = roundtrip([value], Any, "here")
    assert replayed(shaped) == first == [value]


@pytest.mark.parametrize("value", [MIN_INT - 1, MAX_INT + 1, 2**70, -(2**100)])
def test_an_integer_past_64_bits_is_refused_naming_the_range(value: int) -> None:
    for call in (lambda: check(value, Any, "input"), lambda: dump({"n": value}, "input")):
        with pytest.raises(PayloadError) as info:
            call()
        message = str(info.value)
        assert message.startswith("input: ")
        assert "64-bit range" in message and str(MAX_INT) in message and "str(n)" in message


def test_a_bare_huge_int_is_refused_by_its_events_encoder() -> None:
    # shape/roundtrip pass an int on untouched (the hot path); the event's encoding stops it.
    shaped, _ = roundtrip(2**70, Any, "here")
    with pytest.raises(PayloadError, match=r"^step 's': it holds an integer outside the 64-bit"):
        encode(StepCompleted(at=1, step_id="s", result=shaped))
    with pytest.raises(PayloadError, match=r"^the started event: .*64-bit range"):
        encode(ExecutionStarted(at=1, workflow="w", input=2**64))


def test_the_events_encoder_raises_a_type_error_as_before() -> None:
    # Callers that catch TypeError (the recorder) still catch it.
    assert issubclass(PayloadError, TypeError)
    with pytest.raises(TypeError, match="lone surrogate"):
        encode(Emitted(at=1, step_id="e", event="x", payload="\ud800"))


# --- nesting ---


def test_nesting_up_to_the_limit_is_kept_and_stored() -> None:
    value = nested(MAX_DEPTH)
    shaped = check(value, Any, "input")
    assert shaped == value
    assert decode(encode(ExecutionStarted(at=1, workflow="w", input=shaped))).input == value
    first_shape, first = roundtrip(value, Any, "here")
    assert replayed(first_shape) == first == value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 2_000, 20_000])
def test_nesting_past_the_limit_is_refused_naming_it(depth: int) -> None:
    value = nested(depth)
    with pytest.raises(PayloadError) as info:
        check(value, Any, "input of workflow 'w'")
    message = str(info.value)
    assert message.startswith("input of workflow 'w': ")
    assert f"nested more than {MAX_DEPTH} levels" in message and "orjson" in message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 2_000])
def test_a_deep_step_result_is_refused_at_the_latest_by_its_event(depth: int) -> None:
    value = nested(depth)
    with pytest.raises(PayloadError, match=f"nested more than {MAX_DEPTH} levels"):
        shaped, _ = roundtrip(value, Any, "result of step 's'")
        encode(StepCompleted(at=1, step_id="s", result=shaped))


def test_deep_dicts_and_attrs_are_refused_too() -> None:
    deep: Any = {}
    for _ in range(400):
        deep = {"k": deep}
    with pytest.raises(PayloadError, match="nested more than"):
        shape(deep, "here")
    boxed: Any = None
    for _ in range(2_000):
        boxed = Box("b", boxed)
    with pytest.raises(PayloadError, match="nested more than"):
        shape(boxed, "here")


# --- keys and strings ---


def test_dict_keys_are_stored_as_their_text() -> None:
    shaped, first = roundtrip({1: "a", None: "b"}, Any, "here")
    assert first == {"1": "a", "None": "b"} == replayed(shaped)


class Keyed:
    """Shaped by a hook of the user's own, which returns a dict with an int key."""


_codec.converter.register_unstructure_hook(Keyed, lambda _: {1: "a"})


def test_a_dict_key_that_is_not_a_string_and_not_converted_is_refused() -> None:
    # What a user's hook returns is handed to orjson as it is: its keys are not converted.
    with pytest.raises(PayloadError, match=r"key that is not a string.*str\(\)"):
        check(Keyed(), Any, "input")


def test_a_lone_surrogate_is_refused_at_the_call_or_by_its_event() -> None:
    with pytest.raises(PayloadError, match="lone surrogate"):
        check("\udc80", Any, "input")
    with pytest.raises(PayloadError, match="lone surrogate"):
        shape(["\ud800"], "here")
    with pytest.raises(PayloadError, match=r"^step 'n': .*lone surrogate"):
        encode(Noted(at=1, step_id="n", message="\ud800"))


# --- what an unannotated result keeps: the same on the first run and on replay ---

UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
AT = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)

KEPT_AS = [
    ("text", "text"),
    (7, 7),
    (True, True),
    (None, None),
    (1.5, 1.5),
    ([1, "a"], [1, "a"]),
    ({"k": [1]}, {"k": [1]}),
    ((1, "a"), [1, "a"]),
    ({3}, [3]),
    (frozenset({"x"}), ["x"]),
    (b"\x00\xff", "0RI"),  # its base85 text
    (AT, "2030-01-02T03:04:05.600000+00:00"),
    (datetime(2030, 1, 2), "2030-01-02T00:00:00"),
    (date(2030, 1, 2), "2030-01-02"),
    (time(3, 4, 5), "03:04:05"),
    (UUID, "12345678-1234-5678-1234-567812345678"),
    (Colour.BLUE, "blue"),
    (Size.L, 3),
    (Box("b", (1, {2})), {"label": "b", "content": [1, [2]]}),
    (Pair(AT.date(), Colour.RED), {"left": "2030-01-02", "right": "red"}),
]


@pytest.mark.parametrize(("value", "kept"), KEPT_AS, ids=[type(v).__name__ for v, _ in KEPT_AS])
def test_what_an_unannotated_result_comes_back_as(value: Any, kept: Any) -> None:
    shaped, first = roundtrip(value, Any, "here")
    assert same(first, kept)
    assert same(replayed(shaped), kept)


@pytest.mark.parametrize(
    ("value", "tp"),
    [
        ((1, "a"), tuple[int, str]),
        ({1, 2}, set[int]),
        (frozenset({"x"}), frozenset[str]),
        (b"\x00\xff", bytes),
        (AT, datetime),
        (date(2030, 1, 2), date),
        (UUID, uuid.UUID),
        (Colour.BLUE, Colour),
        (Box("b", [1]), Box),
        (Pair(1, "x"), Pair),
    ],
)
def test_an_annotation_restores_the_type_on_first_run_and_replay(value: Any, tp: Any) -> None:
    shaped, first = roundtrip(value, tp, "here")
    assert first == value and type(first) is type(value)
    again = replayed(shaped, tp)
    assert again == value and type(again) is type(value)


@pytest.mark.parametrize(
    "value", [timedelta(seconds=1), Decimal("1.5"), complex(1, 2), object(), range(3)]
)
def test_values_json_has_no_shape_for_are_refused(value: Any) -> None:
    with pytest.raises(PayloadError, match="cannot be stored"):
        roundtrip(value, Any, "here")


# --- the property: whatever the shape, the first run and the replay agree ---

_leaves = (
    st.none()
    | st.booleans()
    | st.integers(MIN_INT, MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.datetimes(timezones=st.just(UTC) | st.none())
    | st.dates()
    | st.times()
    | st.uuids()
    | st.sampled_from([*Colour, *Size])
)
_hashable = (
    st.none()
    | st.booleans()
    | st.integers(MIN_INT, MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        | st.sets(_hashable, max_size=4)
        | st.frozensets(_hashable, max_size=4)
        | st.builds(Box, st.text(max_size=4), inner)
        | st.builds(Pair, inner, inner)
    )


VALUES = st.recursive(_leaves, _containers, max_leaves=25)


@given(VALUES)
def test_any_value_agrees_on_first_run_and_replay(value: Any) -> None:
    shaped, first = roundtrip(value, Any, "here")
    assert same(replayed(shaped), first)
    # and what a start or a signal stores is that same shape
    assert same(check(value, Any, "input"), shaped)


@given(VALUES)
def test_a_stored_shape_is_a_fixed_point(value: Any) -> None:
    shaped = shape(value, "here")
    assert same(shape(shaped, "here"), shaped)
    assert same(durably.codec.load(shaped, Any, "here"), shaped)
