"""Model-based: random batches against LmdbStore and PostgresStore give MemoryStore's
answers, every time.

MemoryStore is the model: same layout code over in-memory tables. LMDB adds a real
transaction engine, big-endian keys in B-trees, map growth and a close/reopen;
PostgreSQL adds SQL range scans over ``bytea`` keys, a write buffer merged into reads,
prefetched keys and a close/reopen. Any difference in an answer (a result, an exception,
a read) is a bug in one of them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from durably.stores import (
    ALL_STATUSES,
    AddTimer,
    Append,
    CreateExecution,
    DeleteSchedule,
    ExecutionRecord,
    LmdbStore,
    MemoryStore,
    Op,
    PutExecution,
    PutMeta,
    PutSchedule,
    PutSignal,
    RemoveTimer,
    Store,
    TakeSignal,
    Timer,
)

# Small pools make collisions (same id, same key, same seq) common. "e1" is a prefix of
# "e10": their keys must not mix.
EIDS = ["e1", "e10", "e2", "x"]
WORKFLOWS = ["wf", "wf2"]
KEYS = [None, "k1", "k2", "k" * 300]
SCHEDULES = ["s1", "s2", "s10"]
TIMERS = ["t1", "t2"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
events = st.lists(
    st.binary(max_size=16) | st.builds(lambda n: b"\xab" * n, st.integers(0, 20_000)),
    min_size=0,
    max_size=3,
)


@st.composite
def records(draw: st.DrawFn) -> ExecutionRecord:
    return ExecutionRecord(
        id=draw(st.sampled_from(EIDS)),
        workflow=draw(st.sampled_from(WORKFLOWS)),
        status=draw(st.sampled_from(ALL_STATUSES)),
        input=draw(json_values),
        created_ms=draw(st.integers(0, 10)),
        updated_ms=draw(st.integers(0, 10)),
        idempotency_key=draw(st.sampled_from(KEYS)),
        timer=draw(st.none() | st.tuples(st.integers(0, 100), st.sampled_from(TIMERS))),
    )


timers = st.builds(
    Timer,
    st.integers(0, 60) | st.just(2**40),
    st.sampled_from([*EIDS, "schedule:s1"]),
    st.sampled_from(TIMERS),
)


def ops(seqs: dict[str, int]) -> st.SearchStrategy[Op]:
    """Ops; appends usually land at the log's next seq (``seqs``), sometimes around it."""
    eids = st.sampled_from(EIDS)

    def append(eid: str, delta: int, evs: list[bytes]) -> Append:
        return Append(eid, max(0, seqs.get(eid, 0) + delta), evs)

    return st.one_of(
        st.builds(CreateExecution, records(), events),
        st.builds(append, eids, st.sampled_from([0, 0, 0, 0, 1, -1]), events.filter(bool)),
        st.builds(PutExecution, records()),
        st.builds(AddTimer, timers),
        st.builds(RemoveTimer, timers),
        st.builds(
            PutSignal,
            eids,
            st.sampled_from(["a", "b"]),
            json_values,
            st.sampled_from(KEYS),
        ),
        st.builds(TakeSignal, eids, st.integers(0, 6)),
        st.builds(PutSchedule, st.sampled_from(SCHEDULES), json_values),
        st.builds(DeleteSchedule, st.sampled_from(SCHEDULES)),
        st.builds(PutMeta, st.sampled_from(["m1", "m2"]), json_values),
    )


def outcome(call: Any) -> Any:
    """A call's answer, or the type of the exception it raised (messages name paths)."""
    try:
        return ("ok", call())
    except Exception as exc:
        return ("raised", type(exc).__name__)


class MatchesMemory(RuleBasedStateMachine):
    """The rules and the invariant, over ``self.store``: the store under test."""

    def __init__(self) -> None:
        super().__init__()
        self.model = MemoryStore()
        self.store = self._open()

    def _open(self) -> Store:
        raise NotImplementedError

    def _seqs(self) -> dict[str, int]:
        out = {}
        for eid in EIDS:
            try:
                out[eid] = len(self.model.read_events(eid))
            except Exception:
                out[eid] = 0
        return out

    @rule(data=st.data())
    def apply_batch(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(ops(self._seqs()), min_size=1, max_size=6), label="batch")
        expected = outcome(lambda: self.model.apply(batch))
        actual = outcome(lambda: self.store.apply(batch))
        assert actual == expected, f"apply({batch!r})"

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()

    @rule(
        status=st.none() | st.sampled_from(ALL_STATUSES),
        workflow=st.none() | st.sampled_from(WORKFLOWS),
        after=st.none() | st.sampled_from(["", "e", *EIDS, "e15", "z"]),
        limit=st.none() | st.integers(0, 4),
    )
    def list_executions(
        self, status: str | None, workflow: str | None, after: str | None, limit: int | None
    ) -> None:
        kw = {"status": status, "workflow": workflow, "after": after, "limit": limit}
        assert outcome(lambda: self.store.list_executions(**kw)) == outcome(
            lambda: self.model.list_executions(**kw)
        ), kw

    @rule(before=st.integers(0, 70) | st.just(2**41), limit=st.none() | st.integers(0, 3))
    def due_timers(self, before: int, limit: int | None) -> None:
        assert self.store.due_timers(before, limit) == self.model.due_timers(before, limit)

    @rule(eid=st.sampled_from(EIDS), from_seq=st.integers(0, 5))
    def read_events_from(self, eid: str, from_seq: int) -> None:
        assert outcome(lambda: self.store.read_events(eid, from_seq)) == outcome(
            lambda: self.model.read_events(eid, from_seq)
        )

    @invariant()
    def same_answers(self) -> None:
        a, m = self.store, self.model
        for eid in EIDS:
            assert a.get_execution(eid) == m.get_execution(eid), eid
            assert outcome(lambda e=eid: a.read_events(e)) == outcome(
                lambda e=eid: m.read_events(e)
            ), eid
            assert a.mailbox(eid) == m.mailbox(eid), eid
        for workflow in WORKFLOWS:
            for key in KEYS[1:]:
                assert a.find_idempotent(workflow, key) == m.find_idempotent(workflow, key)
        assert a.list_executions() == m.list_executions()
        assert a.due_timers(2**62) == m.due_timers(2**62)
        assert a.list_schedules() == m.list_schedules()
        for name in ("m1", "m2", "schema"):
            assert a.get_meta(name) == m.get_meta(name)

    def teardown(self) -> None:
        self.store.close()
        self.model.close()


class LmdbMatchesMemory(MatchesMemory):
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="durably-model-"))
        super().__init__()
        # sync=False: a clean close/reopen does not need fsync, and it keeps examples fast.
        # A tiny map makes the big events of `events` grow it during the run.
        self.committed_map = self.lmdb.map_size()

    @property
    def lmdb(self) -> LmdbStore:
        assert isinstance(self.store, LmdbStore)
        return self.store

    def _open(self) -> LmdbStore:
        return LmdbStore(self.dir / "store", map_size=32 << 10, sync=False, inline=True)

    @rule(data=st.data())
    def apply_batch(self, data: st.DataObject) -> None:
        txnid = self.lmdb._env.info()["last_txnid"]
        super().apply_batch(data)
        if self.lmdb._env.info()["last_txnid"] != txnid:
            # LMDB records a grown map size with the next commit that writes, so a reopen
            # keeps the size of that commit (not a growth for a batch that then failed,
            # nor one followed only by batches that changed nothing).
            self.committed_map = self.lmdb.map_size()

    @rule()
    def reopen(self) -> None:
        super().reopen()
        # Reopened with the small configured size: the map keeps the size it grew to.
        assert self.lmdb.map_size() >= self.committed_map

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.dir, ignore_errors=True)


TestLmdbMatchesMemory = LmdbMatchesMemory.TestCase


class PostgresMatchesMemory(MatchesMemory):
    """Each run in a schema of its own in the test's database; ``sync=False``, as LMDB's
    here: a clean close and reopen needs no WAL flush."""

    dsn = ""
    runs = 0

    def __init__(self) -> None:
        PostgresMatchesMemory.runs += 1
        self.schema = f"m{self.runs}"
        super().__init__()

    def _open(self) -> Store:
        from durably.stores import PostgresStore

        return PostgresStore(self.dsn, schema=self.schema, lock=False, sync=False)


def test_postgres_matches_memory(postgres_dsn: str) -> None:
    PostgresMatchesMemory.dsn = postgres_dsn
    # Fewer runs than LMDB's: each reads a server ~30 times per step.
    chosen = settings()
    run_state_machine_as_test(
        PostgresMatchesMemory,
        settings=settings(chosen, max_examples=min(chosen.max_examples, 20)),
    )
