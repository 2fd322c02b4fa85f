"""Durable queues on a real engine, against a model, in virtual time.

Random declarations and random programs of enqueues, time passing, releases and crashes
(``queue_programs.py``). At every instant the step bodies see no more jobs running than
the concurrency and partition limits allow; at every quiescent point the store agrees with
the model (nothing lost, nothing extra, dedup refusals exactly while a holder is queued or
running, released jobs ended, the others queued or holding a place, the limits kept,
nothing that fits left waiting); at the end each job completed exactly once with its
result, no body whose result was settled ran again, the rate limit held in every window,
and (one at a time, no partitions) admissions followed priority, then arrival.

An example takes about 50 ms (a program of 15 to 60 operations, several restarts), so the
default profile runs a few hundred of them in seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, note, settings

from durably.stores import LmdbStore, MemoryStore, Store

from .queue_programs import Declaration, Op, programs, run_program


def _examples(factor: int) -> int:
    """``factor`` times the profile's examples (30 in CI), capped for the nightly one."""
    return min(factor * settings().max_examples, 1000 * factor)


def _on_memory(decl: Declaration, ops: list[Op]) -> None:
    note(f"{decl}\n{ops}")
    store = MemoryStore()  # one store, kept across the crashes
    run_program(decl, ops, lambda: store)


@settings(max_examples=_examples(4))
@given(programs())
def test_random_programs_keep_every_limit_and_lose_nothing(
    program: tuple[Declaration, list[Op]],
) -> None:
    _on_memory(*program)


@settings(max_examples=_examples(2))
@given(programs(ordered=True))
def test_one_at_a_time_admits_by_priority_then_arrival(
    program: tuple[Declaration, list[Op]],
) -> None:
    _on_memory(*program)


@settings(max_examples=_examples(1))
@given(programs(max_ops=40))
def test_random_programs_on_lmdb_reopened_after_each_crash(
    program: tuple[Declaration, list[Op]],
) -> None:
    decl, ops = program
    note(f"{decl}\n{ops}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"

        def open_store() -> Store:
            return LmdbStore(path, inline=True, map_size=1 << 22)

        def reopen(store: Store) -> Store:
            store.close()  # the process is gone: what is on disk is what was acknowledged
            return open_store()

        run_program(decl, ops, open_store, reopen)


@pytest.mark.slow
@settings(max_examples=_examples(1))
@given(programs(min_ops=80, max_ops=250))
def test_long_programs_keep_every_limit_and_lose_nothing(
    program: tuple[Declaration, list[Op]],
) -> None:
    _on_memory(*program)
