"""Signal deliveries: the :data:`Delivery` type, its validation, and the Hypothesis
strategy :func:`deliveries` that draws them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..core._errors import ConfigurationError
from ..core._types import Signal

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

#: One signal delivery: ``(when, signal, payload)``. ``when`` is seconds after the
#: execution started (virtual time, to the millisecond), or ``"waiting"``: as soon as the
#: execution waits for that signal with none of it buffered. Deliveries are made in
#: sequence order, each once the engine is idle at that instant (a timer due then fired,
#: the execution advanced as far as it can).
Delivery = tuple[float | Literal["waiting"], Signal[Any] | str, Any]


def _signal_name(signal: Signal[Any] | str) -> str:
    return signal.name if isinstance(signal, Signal) else signal


def _check_deliveries(signals: Sequence[Delivery]) -> list[Delivery]:
    out: list[Delivery] = []
    for item in signals:
        if not isinstance(item, tuple) or len(item) != 3:
            raise ConfigurationError(
                f"signals=: each delivery is (when, signal, payload), got {item!r}"
            )
        when, signal, _payload = item
        if when != "waiting" and (
            isinstance(when, bool) or not isinstance(when, int | float) or when < 0
        ):
            raise ConfigurationError(
                f"signals=: when must be seconds >= 0 or 'waiting', got {when!r}"
            )
        if not isinstance(signal, Signal | str):
            raise ConfigurationError(f"signals=: {signal!r} is not a signal name or Signal")
        out.append(item)
    return out


def deliveries(
    signals: Sequence[tuple[Signal[Any] | str, Any]],
    *,
    max_delay: float = 3600.0,
) -> SearchStrategy[list[Delivery]]:
    """A Hypothesis strategy: ``signals`` delivered in a random order, at random times.

    Each ``(signal, payload)`` is delivered once, either after a random delay (seconds,
    up to ``max_delay``) or as soon as the execution waits for it. Use it with
    ``@given(durably.testing.deliveries([...]))`` and pass the drawn list to
    ``check_replay(..., signals=...)``.
    """
    from hypothesis import strategies as st

    items = list(signals)
    when: SearchStrategy[float | Literal["waiting"]] = st.one_of(
        st.just("waiting"),
        st.floats(min_value=0, max_value=max_delay, allow_nan=False, allow_infinity=False),
    )

    def build(order: list[int], times: list[float | Literal["waiting"]]) -> list[Delivery]:
        return [(t, items[i][0], items[i][1]) for i, t in zip(order, times, strict=True)]

    return st.builds(
        build,
        st.permutations(range(len(items))),
        st.lists(when, min_size=len(items), max_size=len(items)),
    )
