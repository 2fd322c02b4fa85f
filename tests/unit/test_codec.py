"""The payload codec (engine/core/_codec.py): dump / shape / load / roundtrip / check /
return_type, through builtins, attrs classes, dataclasses and typed loads.

Deliberately not covered here (about to change elsewhere): NaN and infinities, integers
beyond 64 bits, very deep nesting, sets.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import enum
import typing
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
import pytest

import durably
from durably.core._codec import check, dump, load, return_type, roundtrip, shape
from durably.core._errors import DurablyError, PayloadError


@attrs.define
class Point:
    x: int
    y: int


@attrs.frozen
class Order:
    id: str
    lines: list[Point]
    note: str | None = None


@dataclasses.dataclass
class Reading:
    value: float
    at: datetime
    tags: dict[str, int] = dataclasses.field(default_factory=dict)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Opaque:
    """Nothing cattrs or orjson knows how to store."""


AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


# --- dump and shape ---


def test_dump_is_json_bytes() -> None:
    data = dump({"a": [1, "x", None, True, 1.5]}, "here")
    assert isinstance(data, bytes)
    assert orjson.loads(data) == {"a": [1, "x", None, True, 1.5]}


@pytest.mark.parametrize("value", ["text", "", 0, -7, 2**62, True, False, None])
def test_shape_of_a_stable_builtin_is_itself(value: object) -> None:
    assert shape(value, "here") is value


@pytest.mark.parametrize(
    ("value", "shaped"),
    [
        (1.25, 1.25),
        ([1, [2, 3]], [1, [2, 3]]),
        ((1, "a"), [1, "a"]),
        ({"k": (1, 2)}, {"k": [1, 2]}),
        (Point(1, 2), {"x": 1, "y": 2}),
        (
            Order("o1", [Point(1, 2)]),
            {"id": "o1", "lines": [{"x": 1, "y": 2}], "note": None},
        ),
        (
            Reading(2.5, AT, {"a": 1}),
            {"value": 2.5, "at": "2030-01-02T03:04:05+00:00", "tags": {"a": 1}},
        ),
        (AT, "2030-01-02T03:04:05+00:00"),
        (Colour.BLUE, "blue"),
    ],
)
def test_shape_is_json_shaped_builtins(value: object, shaped: object) -> None:
    assert shape(value, "here") == shaped
    assert orjson.loads(dump(value, "here")) == shaped


def test_bytes_are_stored_as_text_and_come_back() -> None:
    shaped = shape(b"\x00\xffbin", "here")
    assert isinstance(shaped, str)
    assert load(shaped, bytes, "here") == b"\x00\xffbin"


def test_a_value_that_cannot_be_stored_names_where() -> None:
    with pytest.raises(PayloadError) as info:
        dump({"x": Opaque()}, "result of step 'fetch'")
    message = str(info.value)
    assert message.startswith("result of step 'fetch': ")
    assert "dict" in message  # the type of the value given
    assert info.value.__suppress_context__


@pytest.mark.parametrize("call", [dump, shape])
def test_payload_error_is_durablys(call: Any) -> None:
    with pytest.raises(durably.PayloadError):
        call(Opaque(), "here")
    assert issubclass(durably.PayloadError, DurablyError)


def test_where_may_be_a_function_called_only_on_error() -> None:
    calls: list[int] = []

    def where() -> str:
        calls.append(1)
        return "lazily named"

    dump([1, 2], where)
    shape(Point(1, 2), where)
    load({"x": 1, "y": 2}, Point, where)
    roundtrip((1, 2), Any, where)
    check([1], list[int], where)
    assert calls == []
    with pytest.raises(PayloadError, match=r"^lazily named: "):
        dump(Opaque(), where)
    assert calls == [1]


# --- load ---


def test_load_any_returns_the_shape_as_is() -> None:
    data = {"x": [1, 2], "y": None}
    assert load(data, Any, "here") is data


def test_load_object_means_any_value() -> None:
    assert load({"a": [1, {"b": 2}]}, dict[str, object], "here") == {"a": [1, {"b": 2}]}
    data = [1, "x"]
    assert load(data, object, "here") is data


@pytest.mark.parametrize(
    ("data", "tp", "value"),
    [
        ({"x": 1, "y": 2}, Point, Point(1, 2)),
        ({"id": "o", "lines": [{"x": 0, "y": 1}]}, Order, Order("o", [Point(0, 1)])),
        (
            {"value": 1.5, "at": "2030-01-02T03:04:05+00:00"},
            Reading,
            Reading(1.5, AT, {}),
        ),
        ([{"x": 1, "y": 2}], list[Point], [Point(1, 2)]),
        ({"p": {"x": 1, "y": 2}}, dict[str, Point], {"p": Point(1, 2)}),
        ([1, "a"], tuple[int, str], (1, "a")),
        ([1, 2, 3], tuple[int, ...], (1, 2, 3)),
        (None, Point | None, None),
        ({"x": 3, "y": 4}, Point | None, Point(3, 4)),
        ("red", Colour, Colour.RED),
        ("2030-01-02T03:04:05+00:00", datetime, AT),
        (2, float, 2.0),
        ("text", str, "text"),
        (5, int, 5),
        (True, bool, True),
    ],
)
def test_load_restores_the_annotated_type(data: object, tp: Any, value: object) -> None:
    restored = load(data, tp, "here")
    assert restored == value
    assert type(restored) is type(value)


@pytest.mark.parametrize("tp", [None, type(None)])
def test_load_of_none_type(tp: Any) -> None:
    assert load(None, tp, "here") is None
    with pytest.raises(PayloadError, match=r"^here: expected None, got a value of type int"):
        load(5, tp, "here")


@pytest.mark.parametrize(
    ("data", "tp"),
    [
        ({"x": "not a number", "y": 2}, Point),
        ({"x": 1}, Point),
        ([1, "x"], list[int]),
        ("purple", Colour),
        ({"a": 1}, list[int]),
        ("not a date", datetime),
    ],
)
def test_load_of_a_value_that_does_not_fit(data: object, tp: Any) -> None:
    with pytest.raises(PayloadError) as info:
        load(data, tp, "result of step 's1'")
    message = str(info.value)
    assert message.startswith("result of step 's1': the stored value does not fit ")
    assert "new workflow version" in message


@pytest.mark.xfail(
    strict=True,
    reason="bug: load's fast path returns a str/int/bool/None value unchecked whenever the "
    "target is str, int or bool, so load('x', int) gives 'x' (and check('x', int) passes)",
)
@pytest.mark.parametrize(("data", "tp"), [("x", int), (None, int), (None, str), (1, str)])
def test_load_of_a_mismatched_scalar_is_refused_or_converted(data: object, tp: type) -> None:
    try:
        restored = load(data, tp, "here")
    except PayloadError:
        return
    assert type(restored) is tp


# --- roundtrip: what the first run returns, the same as a replay ---


@pytest.mark.parametrize(
    ("value", "tp", "shaped", "decoded"),
    [
        ((1, 2), Any, [1, 2], [1, 2]),
        ({"t": (1, (2, 3))}, Any, {"t": [1, [2, 3]]}, {"t": [1, [2, 3]]}),
        ((1, 2), tuple[int, int], [1, 2], (1, 2)),
        ([(1, 2)], list[tuple[int, int]], [[1, 2]], [(1, 2)]),
        (Point(1, 2), Point, {"x": 1, "y": 2}, Point(1, 2)),
        (Point(1, 2), Any, {"x": 1, "y": 2}, {"x": 1, "y": 2}),
        (Colour.RED, Colour, "red", Colour.RED),
        (AT, datetime, "2030-01-02T03:04:05+00:00", AT),
        ("s", str, "s", "s"),
        (3, Any, 3, 3),
        (None, Any, None, None),
    ],
)
def test_roundtrip_returns_the_decoded_value(
    value: object, tp: Any, shaped: object, decoded: object
) -> None:
    got_shape, got_value = roundtrip(value, tp, "here")
    assert got_shape == shaped
    assert got_value == decoded
    assert type(got_value) is type(decoded)
    # A replay loads the stored shape: it sees exactly what the first run saw.
    replayed = load(orjson.loads(orjson.dumps(got_shape)), tp, "here")
    assert replayed == got_value
    assert type(replayed) is type(got_value)


def test_roundtrip_of_an_unannotated_tuple_is_a_list_on_first_run_and_replay() -> None:
    shaped, first_run = roundtrip((1, "a"), return_type(_unannotated), "here")
    replay = load(shaped, return_type(_unannotated), "here")
    assert first_run == replay == [1, "a"]
    assert type(first_run) is type(replay) is list


def test_roundtrip_of_a_value_that_cannot_be_stored() -> None:
    with pytest.raises(PayloadError, match=r"^step 'x': "):
        roundtrip(Opaque(), Any, "step 'x'")


def test_roundtrip_of_a_value_that_does_not_fit_its_annotation() -> None:
    with pytest.raises(PayloadError, match=r"^step 'x': the stored value does not fit"):
        roundtrip({"x": 1}, Point, "step 'x'")


# --- check ---


def test_check_returns_the_stored_shape() -> None:
    assert check(Point(1, 2), Point, "here") == {"x": 1, "y": 2}
    assert check((1, 2), Any, "here") == [1, 2]
    assert check({"a": {"b": 1}}, dict[str, object], "here") == {"a": {"b": 1}}
    assert check(None, None, "here") is None


def test_check_refuses_a_value_that_does_not_fit() -> None:
    with pytest.raises(PayloadError, match=r"^payload of signal 'go': "):
        check({"x": 1, "y": "two"}, Point, "payload of signal 'go'")
    with pytest.raises(PayloadError):
        check([1, 2], dict[str, int], "here")
    with pytest.raises(PayloadError):
        check(5, None, "here")


def test_check_refuses_a_value_that_cannot_be_stored() -> None:
    with pytest.raises(PayloadError, match=r"^schedule input: "):
        check(Opaque(), Any, "schedule input")


# --- return_type ---


def _sync_int() -> int:
    return 1


async def _async_points() -> list[Point]:
    return []


def _unannotated():  # type: ignore[no-untyped-def]
    return (1, "a")


def _returns_none() -> None:
    return None


async def _async_returns_none() -> None:
    return None


def _coroutine_typing() -> typing.Coroutine[Any, Any, Order]:
    raise NotImplementedError


def _coroutine_abc() -> cabc.Coroutine[Any, Any, str]:
    raise NotImplementedError


def _awaitable_abc() -> cabc.Awaitable[bytes]:
    raise NotImplementedError


def _awaitable_typing() -> typing.Awaitable[float]:
    raise NotImplementedError


def _unresolvable() -> NoSuchName:  # type: ignore[name-defined]  # noqa: F821
    raise NotImplementedError


def _optional() -> Point | None:
    return None


class _Steps:
    def method(self) -> tuple[int, str]:
        return (1, "a")

    async def async_method(self) -> dict[str, Point]:
        return {}


@pytest.mark.parametrize(
    ("fn", "tp"),
    [
        (_sync_int, int),
        (_async_points, list[Point]),
        (_unannotated, Any),
        (_returns_none, Any),
        (_async_returns_none, Any),
        (_coroutine_typing, Order),
        (_coroutine_abc, str),
        (_awaitable_abc, bytes),
        (_awaitable_typing, float),
        (_unresolvable, Any),
        (_optional, Point | None),
        (_Steps().method, tuple[int, str]),
        (_Steps().async_method, dict[str, Point]),
        (lambda: 1, Any),
        (len, Any),
    ],
)
def test_return_type(fn: Any, tp: Any) -> None:
    assert return_type(fn) == tp


def test_return_type_of_a_lambda_step_keeps_tuples_as_lists() -> None:
    fn = lambda: (1, 2)  # noqa: E731
    shaped, value = roundtrip(fn(), return_type(fn), "here")
    assert shaped == value == [1, 2]


@pytest.mark.xfail(
    strict=True,
    raises=TypeError,
    reason="bug: return_type is functools.cache'd, so an unhashable callable (an attrs or "
    "dataclass instance with __call__, eq=True) raises TypeError instead of giving a type",
)
def test_return_type_of_an_unhashable_callable() -> None:
    @attrs.define
    class Fetch:
        url: str

        def __call__(self) -> int:
            return 1

    assert return_type(Fetch("u")) in (int, Any)
