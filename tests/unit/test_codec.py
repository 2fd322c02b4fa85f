"""The payload codec (engine/core/_codec.py): dump / shape / load / roundtrip / check /
return_type, through builtins, attrs classes, dataclasses and typed loads.

Deliberately not covered here (about to change elsewhere): NaN and infinities, integers
beyond 64 bits, very deep nesting, sets.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import enum
import functools
import gc
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
import pytest

import durably
from durably.core import _codec
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


@pytest.mark.parametrize(
    ("data", "tp"),
    [
        ("x", int),
        ("7", int),
        (None, int),
        (1.5, int),
        (2.0, int),
        (None, str),
        (1, str),
        (True, str),
        ([1], str),
        ({"a": 1}, str),
        (1, bool),
        (0, bool),
        ("no", bool),
        (None, bool),
    ],
)
def test_load_of_a_mismatched_scalar_is_refused(data: object, tp: type) -> None:
    # cattrs would call the type (str(None) == "None", int(1.5) == 1, bool("no") is True).
    with pytest.raises(PayloadError) as info:
        load(data, tp, "result of step 's1'")
    message = str(info.value)
    assert message.startswith(f"result of step 's1': the stored value does not fit {tp.__name__} ")
    assert f"a value of type {type(data).__name__}" in message
    assert "change the annotation" in message
    assert "new workflow version" in message
    with pytest.raises(PayloadError):
        check(data, tp, "here")


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_an_int(value: bool) -> None:
    # bool is a subclass of int and is stored as JSON true/false, so an ``int`` step that
    # returns a bool gets the bool back, on the first run as on replay (not 1 or 0).
    assert load(value, int, "here") is value
    assert check(value, int, "here") is value
    assert roundtrip(value, int, "here") == (value, value)
    assert type(roundtrip(value, int, "here")[1]) is bool


def test_a_matching_scalar_loads_as_itself() -> None:
    text, big = "a" * 100, 2**62
    assert load(text, str, "here") is text
    assert load(big, int, "here") is big
    assert load(False, bool, "here") is False


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


def test_return_type_of_an_unhashable_callable() -> None:
    @attrs.define
    class Fetch:
        url: str

        def __call__(self) -> int:
            return 1

        def run(self) -> list[Point]:
            return []

    @dataclasses.dataclass
    class Send:
        to: str

        def __call__(self) -> str:
            return self.to

    @attrs.define(weakref_slot=False)
    class Opaque:  # neither hashable nor weakly referable: read on every call
        def __call__(self) -> int:
            return 1

    # A callable instance reads as it always has (get_type_hints of the instance: Any).
    for fn in (Fetch("u"), Send("x"), Opaque()):
        with pytest.raises(TypeError):
            hash(fn)
        assert return_type(fn) is Any
        assert return_type(fn) is Any
    assert return_type(Fetch("u").run) == list[Point]


def _closure_per_run(run: int) -> Callable[[], tuple[int, str]]:
    def fetch() -> tuple[int, str]:
        return (run, "a")

    return fetch


def test_return_type_cache_stays_small_for_closures_and_lambdas_made_per_run() -> None:
    cache = _codec._return_types
    return_type(_closure_per_run(0))
    return_type(lambda: 0)
    before = len(cache)
    kept = []
    for run in range(10_000):
        fetch = _closure_per_run(run)
        step = lambda run=run: run  # noqa: E731
        assert return_type(fetch) == tuple[int, str]
        assert return_type(step) is Any
        kept.append(fetch)  # all alive at once: a cache keyed on functions would hold each
        assert len(cache) <= before + 2
    assert len(cache) <= before + 2


def test_return_type_of_closures_sharing_code_with_different_annotations() -> None:
    def make(tp: Any) -> Callable[[], Any]:
        def step() -> Any:
            raise NotImplementedError

        step.__annotations__ = {"return": tp}  # what ``-> tp`` evaluates to without PEP 563
        return step

    steps = [make(int), make(list[Point]), make(str)]
    before = len(_codec._return_types)
    for _ in range(3):
        assert [return_type(step) for step in steps] == [int, list[Point], str]
    assert len(_codec._return_types) <= before + 1


def _retried(fn: Callable[[], Any]) -> Callable[[], Any]:
    @functools.wraps(fn)
    def wrapper() -> Any:
        return fn()

    return wrapper


def test_return_type_of_one_code_in_two_namespaces() -> None:
    # One code object exec'd into two modules: equal annotations ("R"), different globals;
    # and a functools.wraps wrapper (one code for every step it wraps) around each.
    code = compile("from __future__ import annotations\ndef step() -> R: ...\n", "<steps>", "exec")
    first: dict[str, Any] = {"R": int}
    second: dict[str, Any] = {"R": Point}
    exec(code, first)
    exec(code, second)
    for _ in range(2):
        assert return_type(first["step"]) is int
        assert return_type(second["step"]) is Point
        assert return_type(_retried(first["step"])) is int
        assert return_type(_retried(second["step"])) is Point


def test_return_type_cache_forgets_a_callable_that_is_gone() -> None:
    @attrs.define(eq=False)
    class Fetch:
        def __call__(self) -> int:
            return 1

    fetch = Fetch()
    return_type(fetch)
    key_ref = _codec._return_types[id(fetch)][0]
    assert key_ref() is fetch
    del fetch
    gc.collect()
    assert key_ref() is None
    assert all(entry[0] is not key_ref for entry in _codec._return_types.values())
