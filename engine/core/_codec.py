"""The one payload codec: cattrs shapes values, orjson turns shapes into bytes.

Every user value (workflow input and result, step results, signal payloads) goes through
:func:`dump` on the way into the log and :func:`load` on the way out. The first run of a
step returns the *decoded* value too, so that the first run and every replay see the same
thing (a tuple comes back as a list on both, unless the annotation says tuple).

What JSON cannot hold is refused with :class:`PayloadError`, never changed silently:
NaN and infinities (orjson would write ``null``), integers outside 64 bits, nesting past
:data:`MAX_DEPTH`, dict keys that are not strings, strings that are not valid UTF-8. The
checks ride on the encoding, so values that fit pay nothing more: orjson raises for the
last four, and cattrs, which already hands every float it meets to a hook, checks that
the float is finite (the only cost is where floats are).
"""

from __future__ import annotations

import enum
import functools
import typing
import uuid
import weakref
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import Any

import orjson
from cattrs.preconf.orjson import make_converter

from ._errors import PayloadError

#: Where a value came from, for error messages: a string, or a function that makes it,
#: alone or as ``(function, *arguments)``. The hot path passes one of these, so the text is
#: built only when there is an error; the tuple, for a step, because a closure over its
#: arguments made ``ctx.step`` hold them in cells on every call (measured: 0.1 us a step).
Where = str | Callable[[], str] | tuple[Any, ...]


def _said(where: Where) -> str:
    if isinstance(where, str):
        return where
    if isinstance(where, tuple):
        return str(where[0](*where[1:]))
    return where()


converter = make_converter()
# ``object`` in an annotation (``dict[str, object]``) means "any stored value", as Any does.
# (A predicate, not a class hook: a hook for the class ``object`` would match every class.)
converter.register_structure_hook_func(lambda tp: tp is object, lambda value, _: value)
# orjson writes a UUID as its text; an annotation brings the UUID back, as for datetimes.
converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(value))


class _NotFinite(ValueError):
    """A NaN or an infinity met while shaping a value (orjson would write ``null``)."""


def _finite(value: float) -> float:
    if value - value == 0.0:  # false for NaN and the infinities only; cheaper than isfinite
        return value
    raise _NotFinite(repr(value))


# cattrs hands each float it meets to the float hook (in lists, dicts, sets, attrs and
# dataclass fields), so the NaN check costs one call per float and nothing elsewhere. An
# enum and an ``object``-typed field are shaped through cattrs too (orjson would take them
# as they are, floats unseen); what they store is unchanged.
def _any_value(value: Any) -> Any:
    # A bare object() is left to orjson, which refuses it (shaping it again would loop).
    return value if type(value) is object else converter.unstructure(value)


converter.register_unstructure_hook(float, _finite)
converter.register_unstructure_hook(enum.Enum, lambda member: converter.unstructure(member.value))
converter.register_unstructure_hook_func(lambda tp: tp is object, _any_value)

#: Values of these types survive the JSON round trip unchanged (float does not: NaN).
_STABLE = frozenset((str, int, bool, type(None)))

#: orjson refuses a document nested deeper than 254 levels, and every value is stored one
#: level down (in its event, record or mailbox entry): so a value may nest this deep.
MAX_DEPTH = 253
#: The integers orjson stores: the signed and the unsigned 64-bit ranges together.
MIN_INT, MAX_INT = -(2**63), 2**64 - 1


def explain(exc: BaseException) -> str:
    """Why the encoder refused a value, and what to do, in the user's terms."""
    text = str(exc)
    if isinstance(exc, _NotFinite):
        return (
            f"it holds the float {text}: a NaN or infinity, which JSON cannot represent (it "
            'would come back as None); store such a number as a string ("nan", "inf") or as '
            "None"
        )
    if isinstance(exc, RecursionError) or "Recursion limit" in text:
        return (
            f"it is nested more than {MAX_DEPTH} levels deep (orjson stores 254 levels and "
            "durably keeps each value one level down); flatten it, or keep it outside the "
            "log and store a reference"
        )
    if "64-bit" in text:
        return (
            f"it holds an integer outside the 64-bit range orjson stores ({MIN_INT} to "
            f"{MAX_INT}); store a bigger one as a string (str(n)) and convert it back"
        )
    if "surrogates" in text:
        return (
            "it holds a string with a lone surrogate, which is not valid UTF-8; store the "
            "text properly decoded, or its raw bytes"
        )
    if "Dict key must be str" in text:
        return (
            "it holds a dict with a key that is not a string (JSON keys are strings); "
            "convert the keys with str(), or store a list of pairs"
        )
    return (
        f"{text}. Return builtins, attrs classes, dataclasses, datetimes, enums or bytes, or "
        "register a cattrs hook on durably.codec.converter"
    )


def _refused(value: Any, where: Where, reason: str) -> PayloadError:
    return PayloadError(
        f"{_said(where)}: a value of type {type(value).__qualname__} cannot be stored: {reason}"
    )


def _encode(value: Any, where: Where, *, nested: bool = False) -> bytes:
    """The JSON bytes of ``value``; ``nested`` encodes it one level down, as it is stored,
    so that a value that passes fits every record it is kept in."""
    try:
        plain = converter.unstructure(value)
        return orjson.dumps([plain] if nested else plain)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _refused(value, where, explain(exc)) from None


def dump(value: Any, where: Where) -> bytes:
    """Serialise ``value`` to JSON bytes, or raise :class:`PayloadError` naming ``where``."""
    return _encode(value, where)


def shape(value: Any, where: Where) -> Any:
    """The JSON-shaped builtins that ``value`` is stored as (what a store keeps)."""
    if type(value) in _STABLE:
        return value  # the encoder of its event refuses a huge int or a bad string
    return orjson.loads(_encode(value, where))


def load(data: Any, tp: Any, where: Where) -> Any:
    """Restore a JSON-shaped value to type ``tp`` (``Any`` returns it as it is).

    A ``str``, ``int`` or ``bool`` annotation takes only a value of that type (a bool for
    ``int`` too, as ``bool`` is an ``int`` and is stored as JSON true/false): cattrs would
    call the type instead, turning ``None`` into ``"None"`` and ``1.5`` into ``1``.
    """
    if tp is Any:
        return data
    if tp is str or tp is int or tp is bool:  # the hot path: every replayed scalar step
        kind = type(data)
        if kind is tp or (kind is bool and tp is int):
            return data
        raise PayloadError(
            f"{_said(where)}: the stored value does not fit {tp.__name__} (it is a value of "
            f"type {kind.__name__}); store a value of type {tp.__name__} or change the "
            "annotation, and if the type changed under a running execution, ship a new "
            "workflow version"
        )
    if tp is None or tp is type(None):  # get_type_hints turns a None annotation to NoneType
        if data is None:
            return None
        raise PayloadError(
            f"{_said(where)}: expected None, got a value of type {type(data).__name__}"
        )
    try:
        return converter.structure(data, tp)
    except Exception as exc:
        raise PayloadError(
            f"{_said(where)}: the stored value does not fit {_type_name(tp)} ({exc}); if the type "
            "changed under a running execution, ship a new workflow version"
        ) from None


def roundtrip(value: Any, tp: Any, where: Where) -> tuple[Any, Any]:
    """``(stored shape, value as a replay would see it)`` for a value about to be recorded."""
    if type(value) in _STABLE and (tp is Any or type(value) is tp or tp is None):
        return value, value  # the encoder of its event refuses a huge int or a bad string
    shaped = orjson.loads(_encode(value, where))
    return shaped, load(shaped, tp, where)


def check(value: Any, tp: Any, where: Where) -> Any:
    """Check that ``value`` fits ``tp`` and can be stored; return its stored shape.

    For the calls that take a value from outside (a start's input, a signal's payload, a
    schedule's input): every check runs here, with ``where`` named, and nothing else
    stands between the value and the store.
    """
    shaped = orjson.loads(_encode(value, where, nested=True))[0]
    load(shaped, tp, where)
    return shaped


# ``return_type``'s cache, by identity: ``id(key) -> (weak ref to key, weak ref to the
# callable last read under that key, its return type)``. The key is a function's code
# object, or the callable itself when it is not a plain function (anything weakly
# referable, hashable or not; anything else is read on every call). A dead key takes its
# entry with it, so the cache holds at most one entry per live step definition.
#
# Why the code object: a lambda or closure made per run is a new function each time, but
# all of them share the one code object compiled with the module, so keying on the function
# would grow by one entry per run. Functions sharing code can still read differently: the
# annotations are evaluated (or, as strings, resolved in the module's globals) per ``def``,
# so ``def make(tp): def step() -> tp`` gives one code and many types, and one code can be
# exec'd into several namespaces, or be a ``functools.wraps`` wrapper shared by many steps.
# ``get_type_hints`` of a function depends only on its ``__annotations__`` and on the
# globals of what it wraps, so a hit needs the very function last read, or one with equal
# annotations and the same globals. (As with any cache, mutating a function's annotations
# after its first step is not seen.)
_return_types: dict[int, tuple[weakref.ref[Any], weakref.ref[Any], Any]] = {}

# The callable answered last, weakly, and its type: a replay asks about one step function
# thousands of times in a row, and this identity check costs a quarter of the cache's
# lookup (measured: 70 ns against 240-290). A hit needs the very function the type was
# read for, as a hit in the cache does, so both answer alike; the weak reference keeps no
# per-run closure alive. One tuple, replaced whole: a thread never reads half an update.
_last: tuple[weakref.ref[Any], Any] | None = None


def return_type(fn: Callable[..., Any]) -> Any:
    """The annotated return type of ``fn`` (``Any`` if it has none or it cannot be read)."""
    global _last
    last = _last
    if last is not None and last[0]() is fn:
        return last[1]
    tp = _cached_return_type(fn)
    try:
        _last = (weakref.ref(fn), tp)
    except TypeError:  # not weakly referable: the cache below still answers
        pass
    return tp


def _cached_return_type(fn: Callable[..., Any]) -> Any:
    func: Any = fn.__func__ if type(fn) is MethodType else fn  # a method is new per access
    key = func.__code__ if type(func) is FunctionType else func
    entry = _return_types.get(id(key))
    if entry is not None and entry[0]() is key:
        last = entry[1]()
        if last is func or (last is not None and key is not func and _reads_alike(last, func)):
            return entry[2]
    tp = _read_return_type(fn)
    try:
        key_ref = weakref.ref(key, functools.partial(_forget, id(key)))
    except TypeError:  # not weakly referable: read on every call
        return tp
    _return_types[id(key)] = (key_ref, key_ref if key is func else weakref.ref(func), tp)
    return tp


def _forget(key_id: int, key_ref: weakref.ref[Any]) -> None:
    entry = _return_types.get(key_id)
    if entry is not None and entry[0] is key_ref:
        _return_types.pop(key_id, None)


def _reads_alike(a: Any, b: Any) -> bool:
    """Whether ``get_type_hints`` reads the same from functions ``a`` and ``b``."""
    try:
        return bool(a.__annotations__ == b.__annotations__) and _globals(a) is _globals(b)
    except Exception:  # an annotation with an odd __eq__: read it again
        return False


def _globals(fn: Any) -> Any:
    while hasattr(fn, "__wrapped__"):  # as get_type_hints finds the globals to resolve in
        fn = fn.__wrapped__
    return getattr(fn, "__globals__", None)


def _read_return_type(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return Any
    tp = hints.get("return", Any)
    if typing.get_origin(tp) is typing.Coroutine or _is_awaitable(tp):
        args = typing.get_args(tp)
        tp = args[-1] if args else Any
    return Any if tp is type(None) else tp


def _is_awaitable(tp: Any) -> bool:
    import collections.abc as cabc

    return typing.get_origin(tp) in (cabc.Coroutine, cabc.Awaitable)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)
