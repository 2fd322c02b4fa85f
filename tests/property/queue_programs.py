"""Random queue programs run on a real engine in virtual time, and what they must observe.

A program is a queue declaration and a list of operations the driver performs one after
another: enqueue (priority, partition, delay, dedup id, and whether the job then waits on a
step the driver releases or on a signal), let virtual time pass, release an admitted job
so it finishes, and crash the engine. A crash refuses every store write from that instant
(what is durable is what was acknowledged) and leaves the engine's nursery with work in
flight; a new engine then opens the same store and recovers. A crash either comes at a
quiescent point or a few scheduler checkpoints after the previous operation, before it
has settled.

Every step body writes to an in-process ledger with the engine's virtual time; between
operations the driver waits until every task is blocked (nothing more can happen at this
instant) and compares the store and the ledger with a model of what the queue holds.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import attrs
import orjson
import trio
import trio.testing
from hypothesis import strategies as st

import durably
from durably.core._queue import STATS_WINDOW_MS
from durably.stores import ACTIVE_STATUSES, ExecutionRecord, Store
from durably.testing._cut import _CutStore, _QuietCuts

QUEUE = "q"
START = datetime(2030, 1, 1, tzinfo=UTC)
#: The statuses of an admitted execution that has not ended.
ADMITTED = frozenset(ACTIVE_STATUSES) - {"queued"}

#: What the property tests exercised this session (printed at the end of the run).
STATS: Counter[str] = Counter()


def result_of(n: int) -> int:
    return n * 7 + 1


# --- the declaration and the program ---


@attrs.frozen
class Declaration:
    concurrency: int | None
    partition_concurrency: int | None
    rate: tuple[int, int] | None  # (count, period in whole milliseconds)
    priority: bool

    def queue(self) -> durably.Queue:
        rate = None if self.rate is None else (self.rate[0], self.rate[1] / 1000)
        return durably.Queue(
            QUEUE,
            concurrency=self.concurrency,
            partition_concurrency=self.partition_concurrency,
            rate_limit=rate,
            priority=self.priority,
        )

    @property
    def period_ms(self) -> int:
        # The declared seconds round up to whole milliseconds; these are whole already.
        return 0 if self.rate is None else math.ceil(self.rate[1])


Op = dict[str, Any]


def declarations(*, ordered: bool = False) -> st.SearchStrategy[Declaration]:
    """Small limits, so programs of a few dozen operations reach them. ``ordered``: one at
    a time and no partitions, where the admission order is decidable."""
    return st.builds(
        Declaration,
        concurrency=st.just(1) if ordered else st.none() | st.integers(1, 3),
        partition_concurrency=st.none() if ordered else st.none() | st.integers(1, 2),
        rate=st.none() | st.tuples(st.integers(1, 3), st.sampled_from([1, 5, 20, 100, 1000])),
        priority=st.booleans(),
    )


def _enqueue(decl: Declaration, ordered: bool) -> st.SearchStrategy[Op]:
    return st.fixed_dictionaries(
        {
            "op": st.just("enqueue"),
            "priority": st.integers(-1, 2) if decl.priority else st.just(0),
            "partition": st.just(None) if ordered else st.sampled_from([None, "a", "a", "b"]),
            "delay_ms": st.sampled_from([None, None, None, 0, 2, 10, 100]),
            "dedup": st.sampled_from([None, None, None, "d1", "d2"]),
            "mode": st.sampled_from(["step", "step", "signal"]),
        }
    )


ADVANCE = st.fixed_dictionaries(
    {"op": st.just("advance"), "ms": st.sampled_from([0, 1, 2, 5, 20, 100, 1000])}
)
RELEASE = st.fixed_dictionaries({"op": st.just("release"), "pick": st.integers(0, 7)})
#: ``after``: None crashes at a quiescent point; k crashes k scheduler checkpoints after
#: the previous operation, with its work in flight.
CRASH = st.fixed_dictionaries({"op": st.just("crash"), "after": st.none() | st.integers(0, 12)})


@st.composite
def programs(
    draw: st.DrawFn, *, ordered: bool = False, min_ops: int = 15, max_ops: int = 60
) -> tuple[Declaration, list[Op]]:
    decl = draw(declarations(ordered=ordered), label="declaration")
    enqueue = _enqueue(decl, ordered)
    # Weighted by kind (``one_of`` would merge repeated strategies into one).
    kinds = {"enqueue": enqueue, "advance": ADVANCE, "release": RELEASE, "crash": CRASH}
    weights = ["enqueue"] * 6 + ["advance"] * 3 + ["release"] * 4 + ["crash"]
    op = st.sampled_from(weights).flatmap(kinds.__getitem__)
    ops = draw(st.lists(op, min_size=min_ops, max_size=max_ops), label="program")
    return decl, ops


# --- the ledger the step bodies write ---


@attrs.define
class Run:
    """One run of one step body."""

    n: int
    step: str
    gen: int
    op: int
    start_ms: int
    start_seq: int
    outcome: str = "running"  # "returned" or "cancelled"
    end_epoch: int = -1


class Ledger:
    """What the step bodies did, and the live count they check at every body start."""

    def __init__(self) -> None:
        self.decl: Declaration | None = None
        self.clock: durably.Clock | None = None
        self.partition: dict[int, str | None] = {}
        self.released: set[int] = set()
        self.events: dict[int, trio.Event] = {}
        self.live: Counter[int] = Counter()
        self.runs: list[Run] = []
        self.violations: list[str] = []
        self.seq = 0
        self.gen = 0
        self.op = -1
        self.epoch = 0

    def begin(self, n: int, step: str) -> Run:
        assert self.decl is not None and self.clock is not None
        self.seq += 1
        run = Run(n, step, self.gen, self.op, self.clock.now_ms(), self.seq)
        self.runs.append(run)
        if any(r.n == n and r.outcome == "running" for r in self.runs[:-1]):
            self.violations.append(f"job {n}: two step bodies at once ({step})")
        self.live[n] += 1
        running = [m for m, k in self.live.items() if k > 0]
        limit = self.decl.concurrency
        if limit is not None and len(running) > limit:
            self.violations.append(
                f"job {n} began {step} at {run.start_ms} with {sorted(running)} running "
                f"(concurrency {limit})"
            )
        part = self.partition[n]
        plimit = self.decl.partition_concurrency
        same = [m for m in running if self.partition[m] == part]
        if part is not None and plimit is not None and len(same) > plimit:
            self.violations.append(
                f"job {n} began {step} with {sorted(same)} of partition {part!r} running "
                f"(partition_concurrency {plimit})"
            )
        return run

    def end(self, run: Run, outcome: str) -> None:
        run.outcome = outcome
        run.end_epoch = self.epoch
        self.live[run.n] -= 1

    def release(self, n: int) -> None:
        self.released.add(n)
        self.events.setdefault(n, trio.Event()).set()


LEDGER = Ledger()


def _enter(n: int) -> int:
    LEDGER.end(LEDGER.begin(n, "enter"), "returned")
    return n


async def _work(n: int) -> int:
    run = LEDGER.begin(n, "work")
    try:
        if n not in LEDGER.released:
            await LEDGER.events.setdefault(n, trio.Event()).wait()
    except BaseException:
        LEDGER.end(run, "cancelled")
        raise
    LEDGER.end(run, "returned")
    return result_of(n)


@durably.workflow("queued-job")
async def queued_job(ctx: durably.Context, job: dict[str, Any]) -> int:
    """Admitted, it enters (an instant step), then holds its place until the driver
    releases it: in its ``work`` step's body (``step``), or waiting for a signal."""
    n = job["n"]
    await ctx.step("enter", _enter, n)
    if job["mode"] == "signal":
        await ctx.wait_for_signal("go", step_id="go")
    return await ctx.step("work", _work, n)


# --- the driver ---


@attrs.define
class Job:
    n: int
    op: int  # the index of the operation that enqueued it
    priority: int
    partition: str | None
    dedup: str | None
    mode: str
    eid: str
    ready_ms: int  # its due time (the store forgets it at admission)


class Harness:
    """Runs one program (in ``trio.run`` under a MockClock) and checks it as it goes."""

    def __init__(
        self,
        decl: Declaration,
        ops: list[Op],
        open_store: Callable[[], Store],
        reopen: Callable[[Store], Store] | None = None,
    ) -> None:
        self.decl = decl
        self.ops = ops
        self.queue = decl.queue()
        self.open_store = open_store
        self.reopen = reopen
        self.inner: Store  # opened by run, reopened after each crash (LMDB)
        self.jobs: dict[int, Job] = {}
        self.by_eid: dict[str, int] = {}
        self.refused: list[tuple[int, str]] = []  # (op index, holder id)
        #: Per engine generation: the epoch it ended at, and whether mid-flight.
        self.ended: dict[int, tuple[int, bool]] = {}
        self.clock = durably.Clock(START)
        self.engine: durably.Engine | None = None
        self.cut: _CutStore | None = None

    # --- running ---

    async def run(self) -> None:
        global LEDGER
        LEDGER = Ledger()
        LEDGER.decl, LEDGER.clock = self.decl, self.clock
        quiet = _QuietCuts()
        with _logger_filter(quiet):
            self.inner = self.open_store()
            try:
                with _watchdog(WATCHDOG_SECONDS) as fired:
                    await self._run()
                assert not fired(), f"no progress in {WATCHDOG_SECONDS} s of real time"
                self.check_end()
            finally:
                self.inner.close()

    async def _run(self) -> None:
        # Every program ends with a restart; the last engine then releases every job.
        ops = [*self.ops, {"op": "crash", "after": None}]
        index = 0
        while index < len(ops):
            async with self._engine(self.inner):
                await self._settle()
                index = await self._until_crash(ops, index) + 1
            STATS["crashes"] += 1
            LEDGER.op = index
            if self.reopen is not None:
                self.inner = self.reopen(self.inner)
        async with self._engine(self.inner):
            await self._settle()
            await self._finish()

    async def _until_crash(self, ops: list[Op], index: int) -> int:
        """Run the operations from ``index`` up to the next crash; its index."""
        while ops[index]["op"] != "crash":
            LEDGER.op = index
            await self._do(ops[index])
            index += 1
            after = ops[index]["after"] if ops[index]["op"] == "crash" else None
            if after is not None:
                for _ in range(after):
                    await trio.lowlevel.checkpoint()
                self._crash(mid_flight=True)
                return index
            await self._settle()
        self._crash(mid_flight=False)
        return index

    def _engine(self, inner: Store) -> durably.Engine:
        LEDGER.gen += 1
        self.cut = _CutStore(inner, None)
        # A job crashed in its step body is a crash-loop suspect: it runs alone among
        # suspects until progress, for at most ``max_replay_seconds`` (``_solo.py``), and
        # is dead-lettered after ``max_recovery_attempts``. The programs crash beside
        # blocked bodies on purpose: short turns, and no dead letters.
        self.engine = durably.Engine(
            self.cut,
            workflows=[queued_job],
            queues=[self.queue],
            clock=self.clock,
            max_recovery_attempts=10_000,
            max_replay_seconds=0.001,
        )
        return self.engine

    def _crash(self, *, mid_flight: bool) -> None:
        """Nothing written from now on is durable; leaving the engine's ``async with``
        then cancels everything in flight."""
        assert self.cut is not None
        self.cut.allow = self.cut.applied
        self.ended[LEDGER.gen] = (LEDGER.epoch, mid_flight)
        STATS["mid-flight crashes" if mid_flight else "quiescent crashes"] += 1

    async def _settle(self) -> None:
        """Until nothing more happens at this instant (a wait with a cushion of 0 wakes
        before the MockClock would jump), then the quiescent checks.

        After a restart, crash-loop suspects take turns of a millisecond each: time
        passes, a millisecond at a time, until each admitted job is back in its body and
        each released one has ended."""
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(len(self.jobs) + 2):
            if not self._resuming():
                break
            await self._advance_to(self.clock.now_ms() + 1)
            await trio.testing.wait_all_tasks_blocked()
            STATS["milliseconds of suspect turns"] += 1
        LEDGER.epoch += 1
        self.check_quiescent()

    def _resuming(self) -> bool:
        records = {r.id: r for r in self._records()}
        for job in self.jobs.values():
            status = records[job.eid].status
            if job.n in LEDGER.released:
                if status != "completed":
                    return True
            elif status in ADMITTED and job.mode == "step" and not LEDGER.live[job.n]:
                return True
            elif status in ADMITTED and job.mode == "signal" and status != "waiting":
                return True
        return False

    async def _do(self, op: Op) -> None:
        engine = self.engine
        assert engine is not None
        kind = op["op"]
        STATS[f"{kind} ops"] += 1
        if kind == "enqueue":
            await self._enqueue(engine, op)
        elif kind == "advance":
            await self._advance_to(self.clock.now_ms() + op["ms"])
        else:
            assert kind == "release", kind
            holding = self.holding()
            if holding:
                await self._release(engine, holding[op["pick"] % len(holding)])

    async def _enqueue(self, engine: durably.Engine, op: Op) -> None:
        n = len(self.jobs) + len(self.refused)
        holder = self._holder(op["dedup"])
        delay = None if op["delay_ms"] is None else op["delay_ms"] / 1000
        LEDGER.partition[n] = op["partition"]
        try:
            eid = await engine.enqueue(
                QUEUE,
                queued_job,
                {"n": n, "mode": op["mode"]},
                priority=op["priority"],
                partition=op["partition"],
                delay=delay,
                dedup_id=op["dedup"],
            )
        except durably.DuplicateEnqueueError as exc:
            assert holder is not None, f"job {n} refused as a duplicate of {exc.existing}"
            assert exc.existing == holder.eid, (exc.existing, holder)
            self.refused.append((LEDGER.op, exc.existing))
            STATS["dedup refusals"] += 1
            return
        assert holder is None, f"job {n} accepted while job {holder} holds {op['dedup']!r}"
        record = engine.store.get_execution(eid)
        assert record is not None and record.queue == QUEUE
        # Admitted at once (not_before cleared) only if due already.
        ready = _ready(record) if record.status == "queued" else record.created_ms
        job = Job(
            n, LEDGER.op, op["priority"], op["partition"], op["dedup"], op["mode"], eid, ready
        )
        self.jobs[n] = job
        self.by_eid[eid] = n

    def _holder(self, dedup: str | None) -> Job | None:
        """The model: a dedup id is held by a job that is not released yet (a released
        job ends before the next operation, which the quiescent checks confirm)."""
        if dedup is None:
            return None
        held = [j for j in self.jobs.values() if j.dedup == dedup and j.n not in LEDGER.released]
        assert len(held) <= 1, held
        return held[0] if held else None

    async def _release(self, engine: durably.Engine, job: Job) -> None:
        LEDGER.release(job.n)
        if job.mode == "signal":
            outcome = await engine.signal(job.eid, "go")
            # Admitted and settled, it waits for this very signal.
            assert outcome.delivery is durably.SignalDelivery.DELIVERED, outcome
        STATS["releases"] += 1

    async def _advance_to(self, due_ms: int) -> None:
        # The engine's own deadlines for ``due_ms``: both wake at the same trio instant.
        await trio.sleep_until(self.clock.deadline(due_ms))

    async def _finish(self) -> None:
        """Release everything, and let time pass until every job has ended."""
        for _ in range(4 * len(self.jobs) + 10):
            holding = self.holding()
            for job in holding:
                await self._release(self.engine, job)  # type: ignore[arg-type]
            await self._settle()
            records = self._records()
            queued = [r for r in records if r.status == "queued"]
            if not queued and not self.holding():
                return
            if not holding:
                due = self._next_due(records)
                assert due is not None, f"queued {queued} with nothing to wait for"
                await self._advance_to(due)
                await self._settle()
        raise AssertionError("the jobs did not all end")

    # --- reading ---

    def _records(self) -> list[ExecutionRecord]:
        assert self.cut is not None
        return self.cut.inner.list_executions()

    def holding(self) -> list[Job]:
        """Admitted jobs not released yet, in enqueue order."""
        records = {r.id: r for r in self._records()}
        return [
            j
            for j in self.jobs.values()
            if j.n not in LEDGER.released and records[j.eid].status in ADMITTED
        ]

    def _next_due(self, records: list[ExecutionRecord]) -> int | None:
        now = self.clock.now_ms()
        times = [_ready(r) for r in records if r.status == "queued" and _ready(r) > now]
        if self.decl.rate is not None:
            times += [
                a + self.decl.period_ms
                for r in records
                if (a := r.admitted_ms) is not None and a + self.decl.period_ms > now
            ]
        return min(times, default=None)

    # --- the checks ---

    def check_quiescent(self) -> None:
        """At an instant where nothing more happens: the ledger saw no limit passed; the
        store holds exactly the accepted jobs; released ones have ended, the others are
        queued or hold a place; admitted ones are within the limits, and nothing that
        fits waits (admission is event driven, so nothing waits for a poll)."""
        assert not LEDGER.violations, LEDGER.violations
        decl = self.decl
        now = self.clock.now_ms()
        records = self._records()
        assert sorted(r.id for r in records) == sorted(self.by_eid), "executions lost or extra"
        admitted: list[int] = []
        queued: list[tuple[int, int]] = []
        for r in records:
            n = self.by_eid[r.id]
            if n in LEDGER.released:
                assert r.status == "completed", f"job {n} released, but {r.status}"
            elif r.status == "queued":
                assert _ready(r) == self.jobs[n].ready_ms, (n, r)
                queued.append((n, _ready(r)))
            else:
                assert r.status in ADMITTED, f"job {n} {r.status} before its release"
                admitted.append(n)
                if self.jobs[n].mode == "step":
                    # Launched and inside its body: the ledger sees every admitted job.
                    assert LEDGER.live[n] == 1, f"job {n} admitted but not in its step"
                else:
                    assert r.status == "waiting", f"job {n} admitted, {r.status}"
        if decl.concurrency is not None:
            assert len(admitted) <= decl.concurrency, (sorted(admitted), decl)
        per = Counter(self.jobs[n].partition for n in admitted)
        per.pop(None, None)
        if decl.partition_concurrency is not None:
            assert max(per.values(), default=0) <= decl.partition_concurrency, per
        self.check_rate(records)
        room = decl.concurrency is None or len(admitted) < decl.concurrency
        if decl.rate is not None:
            recent = [
                a for r in records if (a := r.admitted_ms) is not None and a > now - decl.period_ms
            ]
            room = room and len(recent) < decl.rate[0]
        if queued and not room:
            STATS["settled instants with jobs held back by a limit"] += 1
        if room:
            fits = [
                n
                for n, ready in queued
                if ready <= now
                and (
                    self.jobs[n].partition is None
                    or decl.partition_concurrency is None
                    or per[self.jobs[n].partition] < decl.partition_concurrency
                )
            ]
            assert not fits, f"at {now}: {fits} fit but wait ({decl}, admitted {admitted})"

    def check_rate(self, records: list[ExecutionRecord]) -> None:
        """At most ``count`` admissions in any half-open window of the period."""
        if self.decl.rate is None:
            return
        count, period = self.decl.rate
        times = sorted(a for r in records if (a := r.admitted_ms) is not None)
        for i, at in enumerate(times):
            window = [t for t in times[i:] if t < at + period]
            assert len(window) <= count, f"{window} admitted within {period} ms (max {count})"

    def check_end(self) -> None:
        """Each accepted job completed once with its result; no step body that had
        returned before a settled instant ran again; and, where decidable, the order."""
        assert self.cut is not None
        store = self.cut.inner
        records = {r.id: r for r in store.list_executions()}
        assert set(records) == set(self.by_eid)
        for eid, n in self.by_eid.items():
            r = records[eid]
            assert (r.status, r.result) == ("completed", result_of(n)), (n, r.status, r.error)
            assert r.admitted_ms is not None and r.queue == QUEUE
            assert r.admitted_ms >= self.jobs[n].ready_ms, f"job {n} admitted before its delay"
            completed = [
                e["step_id"]
                for raw in store.read_events(eid)
                if (e := orjson.loads(raw))["t"] == "step.completed"
            ]
            assert sorted(completed) == ["enter", "work"], (n, completed)
            # Nothing runs before its (durable) admission: the actor starts after it.
            starts = [run.start_ms for run in LEDGER.runs if run.n == n]
            assert min(starts) >= r.admitted_ms, (n, starts, r.admitted_ms)
        self.check_reruns()
        self.check_rate(list(records.values()))
        # The store's log of admissions (the rate window recovery reads back) holds each
        # admission the stats minute or the rate period still needs, and nothing else.
        logged = set(store.admissions(QUEUE))
        made = {(r.admitted_ms, r.id) for r in records.values()}
        keep = max(self.decl.period_ms, STATS_WINDOW_MS)
        needed = {
            (at, eid) for at, eid in made if at is not None and at > self.clock.now_ms() - keep
        }
        assert needed <= logged <= made, (sorted(needed - logged), sorted(logged - made))
        STATS["jobs completed"] += len(self.by_eid)
        if self.decl.concurrency == 1 and all(j.partition is None for j in self.jobs.values()):
            self.check_order({eid: records[eid] for eid in self.by_eid})

    def check_reruns(self) -> None:
        """A body that returned is run again only if its engine was crashed mid-flight
        with no settled instant after the return (its commit may have been refused)."""
        returned: dict[tuple[int, str], Run] = {}
        for run in LEDGER.runs:
            key = (run.n, run.step)
            before = returned.get(key)
            if before is not None:
                assert run.gen > before.gen, f"{key} ran twice in one engine: {before}, {run}"
                last_epoch, mid_flight = self.ended[before.gen]
                assert mid_flight and before.end_epoch == last_epoch, (
                    f"{key} ran again after its result was settled: {before} then {run}"
                )
                STATS["bodies re-run after a mid-flight crash"] += 1
            if run.outcome == "returned":
                returned[key] = run

    def check_order(self, records: dict[str, ExecutionRecord]) -> None:
        """One at a time, no partitions: each admission took the best (priority, then
        arrival) of the jobs queued before that operation and due by then."""
        first: dict[int, Run] = {}
        for run in LEDGER.runs:
            if run.step == "enter":
                first.setdefault(run.n, run)
        order = sorted(self.jobs, key=lambda n: first[n].start_seq)
        key = {n: (j.priority if self.decl.priority else 0, n) for n, j in self.jobs.items()}
        for i, x in enumerate(order):
            at = records[self.jobs[x].eid].admitted_ms
            assert at is not None
            better = [
                y
                for y in order[i + 1 :]
                if self.jobs[y].op < first[x].op and self.jobs[y].ready_ms <= at and key[y] < key[x]
            ]
            assert not better, f"job {x} {key[x]} admitted at {at} before {better} ({order})"
            rivals = [
                y
                for y in order[i + 1 :]
                if self.jobs[y].op < first[x].op and self.jobs[y].ready_ms <= at
            ]
            if rivals:
                STATS["admissions chosen among several"] += 1
        STATS["admission orders checked"] += 1


def _ready(record: ExecutionRecord) -> int:
    return record.not_before if record.not_before is not None else record.created_ms


#: Real seconds one program may take: an engine spinning at one virtual instant (a
#: livelock) never lets the MockClock move, and would otherwise hang the test.
WATCHDOG_SECONDS = 60.0


@contextmanager
def _watchdog(seconds: float) -> Iterator[Callable[[], bool]]:
    """Cancels the block from a real-time thread after ``seconds``."""
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:
        timer = threading.Timer(seconds, token.run_sync_soon, (scope.cancel,))
        timer.start()
        try:
            yield lambda: scope.cancelled_caught
        finally:
            timer.cancel()


@contextmanager
def _logger_filter(quiet: _QuietCuts) -> Iterator[None]:
    logger = logging.getLogger("durably")
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def run_program(
    decl: Declaration,
    ops: list[Op],
    open_store: Callable[[], Store],
    reopen: Callable[[Store], Store] | None = None,
) -> Harness:
    harness = Harness(decl, ops, open_store, reopen)
    trio.run(harness.run, clock=trio.testing.MockClock(autojump_threshold=0))
    STATS["programs"] += 1
    return harness
