"""The one payload codec: cattrs shapes values, orjson turns shapes into bytes.

Every user value (workflow input and result, step results, signal payloads) goes through
:func:`dump` on the way into the log and :func:`load` on the way out. The first run of a
step returns the *decoded* value too, so that the first run and every replay see the same
thing (a tuple comes back as a list on both, unless the annotation says tuple).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

import orjson
from cattrs.preconf.orjson import make_converter

from ._errors import PayloadError

#: Where a value came from, for error messages: a string, or a function that makes it
#: (the hot path passes a function, so the text is built only when there is an error).
Where = str | Callable[[], str]


def _said(where: Where) -> str:
    return where if isinstance(where, str) else where()


converter = make_converter()
# ``object`` in an annotation (``dict[str, object]``) means "any stored value", as Any does.
# (A predicate, not a class hook: a hook for the class ``object`` would match every class.)
converter.register_structure_hook_func(lambda tp: tp is object, lambda value, _: value)

#: Values of these types survive the JSON round trip unchanged (float does not: NaN).
_STABLE = frozenset((str, int, bool, type(None)))


def dump(value: Any, where: Where) -> bytes:
    """Serialise ``value`` to JSON bytes, or raise :class:`PayloadError` naming ``where``."""
    try:
        return orjson.dumps(converter.unstructure(value))
    except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
        raise PayloadError(
            f"{_said(where)}: a value of type {type(value).__qualname__} cannot be stored ({exc}). "
            "Return builtins, attrs classes, dataclasses, datetimes, enums or bytes, or "
            "register a cattrs hook on durably.codec.converter."
        ) from None


def shape(value: Any, where: Where) -> Any:
    """The JSON-shaped builtins that ``value`` is stored as (what a store keeps)."""
    if type(value) in _STABLE:
        return value
    return orjson.loads(dump(value, where))


def load(data: Any, tp: Any, where: Where) -> Any:
    """Restore a JSON-shaped value to type ``tp`` (``Any`` returns it as it is)."""
    if tp is Any or (type(data) in _STABLE and tp in _STABLE_TYPES):
        return data
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


_STABLE_TYPES = frozenset((str, int, bool))


def roundtrip(value: Any, tp: Any, where: Where) -> tuple[Any, Any]:
    """``(stored shape, value as a replay would see it)`` for a value about to be recorded."""
    if type(value) in _STABLE and (tp is Any or type(value) is tp or tp is None):
        return value, value
    shaped = orjson.loads(dump(value, where))
    return shaped, load(shaped, tp, where)


def check(value: Any, tp: Any, where: Where) -> Any:
    """Check that ``value`` fits ``tp`` and serialises; return its stored shape."""
    shaped = shape(value, where)
    load(shaped, tp, where)
    return shaped


@functools.cache
def return_type(fn: Callable[..., Any]) -> Any:
    """The annotated return type of ``fn`` (``Any`` if it has none or it cannot be read)."""
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
