"""What each reported figure is: its unit, its target, and how its ratio is formed."""

from __future__ import annotations

#: Figures whose target is a ratio to their baseline (and what the baseline is called).
RELATIVE = {
    "sequential": "raw",
    "concurrent": "raw",
    "signal_p50": "the 2-commit limit",
    "timers": "the limit",
    "recovery": "raw",
    "replay": "raw",
    "concurrent_aio": "trio",
    "signal_aio": "trio",
    "queue": "unqueued",
    "queue_rate": "limit",
    "queue_rate_max": "limit",
    "multi_process": "1 worker of many",
}


class Spec:
    """One reported figure: how it is read, its target, and how its ratio is formed."""

    def __init__(
        self,
        name: str,
        what: str,
        unit: str,
        target: float | None,
        higher_is_better: bool,
        baseline: str,
        baseline_unit: str,
        ratio: str,
        text: str | None = None,
    ) -> None:
        """``target=None``: a figure reported beside its baseline, with no target (its
        ``met`` is ``None``); ``text`` replaces the generated target text."""
        self.name, self.what, self.unit = name, what, unit
        self.target, self.higher_is_better = target, higher_is_better
        self.baseline, self.baseline_unit, self.ratio = baseline, baseline_unit, ratio
        self.text = text

    def met(self, value: float, ratio: float) -> bool | None:
        if self.target is None:
            return None
        if self.name in RELATIVE:  # a target relative to the baseline: read the ratio
            return ratio >= self.target and (self.name != "timers" or value <= 50.0)
        return value >= self.target if self.higher_is_better else value <= self.target

    def target_text(self) -> str:
        if self.text is not None:
            return self.text
        if self.target is None:
            return "none (reported)"
        if self.name in RELATIVE:
            return f">= {self.target} x {RELATIVE[self.name]}"
        sign = ">=" if self.higher_is_better else "<="
        return f"{sign} {self.target:,g} {self.unit}"


SPECS = {
    s.name: s
    for s in (
        Spec(
            "sequential",
            "one 10-step workflow at a time",
            "steps/s",
            0.57,  # 0.92 x the ceiling 12 commits per 10 steps allow
            True,
            "raw LMDB synced commits (1 put/txn)",
            "commits/s",
            "figure / raw",
        ),
        Spec(
            "concurrent",
            "executions x 10 steps started at once",
            "steps/s",
            0.03,
            True,
            "raw LMDB puts in 1,000-put synced txns",
            "puts/s",
            "figure / raw",
        ),
        Spec(
            "fanout",
            "one execution, 1,000 steps through ctx.gather(limit=100)",
            "steps/s",
            5_000,
            True,
            "raw LMDB puts in 1,000-put synced txns",
            "puts/s",
            "figure / raw",
        ),
        Spec(
            "queue",
            "executions enqueued at once on Queue(concurrency=100), until all finished",
            "executions/s",
            0.8,
            True,
            "the same executions started unqueued, 100 at a time, same repeat",
            "executions/s",
            "figure / raw",
        ),
        *(
            Spec(
                f"queue_admit_{p}",
                f"admission latency {p}: slot freed -> next execution's first step",
                "ms",
                None,
                False,
                "the same hand-over unqueued (wait returns, start)",
                "ms",
                "raw / figure",
            )
            for p in ("p50", "p99")
        ),
        Spec(
            "queue_rate",
            "steady admissions/s of a queue with rate_limit=(limit, 1 s), no other limit",
            "admissions/s",
            0.98,
            True,
            "the queue's rate limit",
            "admissions/s",
            "figure / raw",
        ),
        Spec(
            "queue_rate_max",
            "most admissions in any 1-s window of that queue",
            "admissions",
            1.0,
            False,
            "the queue's rate limit",
            "admissions",
            "raw / figure",
            text="<= 1 x limit",
        ),
        Spec(
            "starts",
            "start() calls at once, until durable",
            "starts/s",
            10_000,
            True,
            "raw LMDB puts in 1,000-put synced txns",
            "puts/s",
            "figure / raw",
        ),
        Spec(
            "signal_p50",
            "signal -> waiting workflow -> step durable",
            "ms",
            0.8,
            False,
            "2 raw synced commits",
            "ms",
            "raw / figure",
        ),
        Spec(
            "signal_p99",
            "signal -> waiting workflow -> step durable",
            "ms",
            5.0,
            False,
            "2 raw synced commits",
            "ms",
            "raw / figure",
        ),
        Spec(
            "client_signal_p50",
            "client process signal -> worker process acts",
            "ms",
            20.0,
            False,
            "2 raw synced commits",
            "ms",
            "raw / figure",
        ),
        Spec(
            "client_signal_p99",
            "client process signal -> worker process acts",
            "ms",
            100.0,
            False,
            "2 raw synced commits",
            "ms",
            "raw / figure",
        ),
        Spec(
            "client_signal_lost_p50",
            "the same with the worker's socket removed (every hint lost)",
            "ms",
            1000.0,
            False,
            "the worker's poll_interval",
            "ms",
            "raw / figure",
        ),
        Spec(
            "client_signal_lost_p99",
            "the same with the worker's socket removed (every hint lost)",
            "ms",
            1100.0,
            False,
            "the worker's poll_interval",
            "ms",
            "raw / figure",
        ),
        Spec(
            "timers",
            "sleeps due at one instant: p99 lateness",
            "ms",
            0.5,
            False,
            "n bare trio wakes + n batched raw puts",
            "ms",
            "raw / figure",
            text=">= 0.5 x the limit and <= 50 ms",
        ),
        Spec(
            "recovery",
            "restart over waiting executions until parked and ready",
            "s",
            0.4,
            False,
            "raw LMDB scan+decode of every record",
            "s",
            "raw / figure",
        ),
        Spec(
            "parked_memory",
            "waiting executions, max_live_executions bounded",
            "MB",
            300.0,
            False,
            "RSS of the idle engine process",
            "MB",
            "figure / idle",
        ),
        Spec(
            "concurrent_aio",
            "the concurrent workload under durably.aio in asyncio.run",
            "steps/s",
            0.9,
            True,
            "the same workload under trio, same repeat",
            "steps/s",
            "figure / raw",
        ),
        Spec(
            "signal_aio",
            "signal round trip p50 under durably.aio (asyncio side waits)",
            "ms",
            0.9,
            False,
            "the same round trip under trio, same repeat",
            "ms",
            "raw / figure",
        ),
        Spec(
            "multi_process",
            "the concurrent workload served by N = cores worker processes of many",
            "steps/s",
            1.6,  # the target: 2 workers on 2 cores
            True,
            "the same served by 1 worker process of many, same repeat",
            "steps/s",
            "figure / raw",
        ),
        Spec(
            "multi_process_one",
            "the concurrent workload served by 1 worker process of many",
            "steps/s",
            None,
            True,
            "the same served by the store's one worker (many_workers=False), same repeat",
            "steps/s",
            "figure / raw",
        ),
        Spec(
            "replay",
            "rebuild one execution with a long history",
            "events/s",
            0.5,
            True,
            "raw LMDB read + orjson decode of the log",
            "events/s",
            "figure / raw",
        ),
    )
}
