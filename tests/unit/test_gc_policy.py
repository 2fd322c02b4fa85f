"""Engine(gc_threshold=): the cyclic collector's first threshold while engines run, put
back as the host had it; never lowered, never fought over with the host."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import durably
from durably.runtime import _gc
from durably.stores import MemoryStore


@pytest.fixture(autouse=True)
def host_threshold() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_held_while_any_holder_runs_then_put_back() -> None:
    _gc.hold(20_000)
    assert gc.get_threshold() == (20_000, 10, 10)
    _gc.hold(20_000)
    _gc.release()
    assert gc.get_threshold() == (20_000, 10, 10)  # one engine still runs
    _gc.release()
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_host_threshold_is_never_lowered() -> None:
    gc.set_threshold(50_000, 5, 5)
    _gc.hold(20_000)
    assert gc.get_threshold() == (50_000, 5, 5)
    _gc.release()
    assert gc.get_threshold() == (50_000, 5, 5)


def test_a_change_the_host_made_meanwhile_is_kept() -> None:
    _gc.hold(20_000)
    gc.set_threshold(3_000, 10, 10)
    _gc.release()
    assert gc.get_threshold() == (3_000, 10, 10)


async def test_an_engine_raises_it_while_it_runs_and_none_leaves_it() -> None:
    async with durably.Engine(MemoryStore()):
        assert gc.get_threshold()[0] == 20_000
    assert gc.get_threshold() == (700, 10, 10)
    async with durably.Engine(MemoryStore(), gc_threshold=None):
        assert gc.get_threshold() == (700, 10, 10)
    async with durably.Engine(MemoryStore(), gc_threshold=5_000):
        assert gc.get_threshold()[0] == 5_000


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "20000"])
def test_a_threshold_that_is_not_a_positive_int_is_refused(bad: object) -> None:
    with pytest.raises(durably.ConfigurationError, match="gc_threshold must be a positive int"):
        durably.Engine(MemoryStore(), gc_threshold=bad)  # type: ignore[arg-type]


async def test_an_engine_that_fails_to_start_puts_it_back() -> None:
    store = MemoryStore()
    store.close()
    with pytest.raises(durably.StoreError):
        async with durably.Engine(store):
            pass
    assert gc.get_threshold() == (700, 10, 10)
