"""The telemetry hook the runtime calls (``Parts.telemetry``), over OpenTelemetry's API.

Rules of this module:

- Only the API is imported (``opentelemetry-api``); whose SDK records the spans and
  metrics is the host's choice (its providers, or the global ones).
- Spans: one per actor run (load to finish or park), one per step-body attempt. A
  replayed step runs no body and gets no span; the run span says how many events its
  load replayed (``durably.log.events``) instead of an event per step.
- A run span's parent is the context its execution's start was made in (the record's
  ``trace``); without one it is a root span. Never the context its trio task inherited.
- The metrics instruments are made once per ``Telemetry``: one object may serve many
  engines (``watch``), and the observable gauges add their figures up.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio

from ..core._errors import ConfigurationError
from ..runtime._primitive import _EngineFailure, unwinds
from ..runtime._waiting import _Suspend

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from ..runtime._ports import Parts

_WAITING = ("sleeping", "waiting", "retrying")
_FAILED = ("failed", "compensation_failed")
# Buckets for what durably measures: commits take tens of microseconds to a few
# milliseconds, batches hold one op to 20,000 (the commit actor's cap).
_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
_OPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)


_SHARED: list[Telemetry] = []
_SHARED_LOCK = threading.Lock()


class TelemetryUnavailableError(ConfigurationError):
    """Telemetry was asked for, but OpenTelemetry is not installed."""


def _version() -> str:
    try:
        return importlib.metadata.version("durably")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree
        return "0"


def _otel() -> Any:
    try:
        from opentelemetry import context, metrics, propagate, trace
    except ImportError as exc:
        raise TelemetryUnavailableError(
            "telemetry needs OpenTelemetry's API: pip install 'durably[otel]' "
            "(and an SDK, opentelemetry-sdk, to record anything)"
        ) from exc
    return context, metrics, propagate, trace


class Telemetry:
    """durably's spans and metrics, recorded through the given providers (``None``: the
    global ones, ``opentelemetry.trace.get_tracer_provider()`` and its metrics twin).

    Pass it as ``Engine(..., telemetry=...)``; one object may serve several engines.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._context, metrics, self._propagate, self._trace = _otel()
        version = _version()
        self._tracer = self._trace.get_tracer("durably", version, tracer_provider=tracer_provider)
        meter = metrics.get_meter("durably", version, meter_provider=meter_provider)
        counter = meter.create_counter
        self._started = counter(
            "durably.executions.started", "{execution}", "Executions that began their first run"
        )
        self._completed = counter("durably.executions.completed", "{execution}", "Completed")
        self._failed = counter("durably.executions.failed", "{execution}", "Failed")
        self._cancelled = counter("durably.executions.cancelled", "{execution}", "Cancelled")
        self._steps = counter("durably.steps", "{attempt}", "Step bodies run (attempts)")
        histogram = meter.create_histogram
        self._batch = histogram(
            "durably.commit.batch_size",
            "{op}",
            "Ops per store transaction",
            explicit_bucket_boundaries_advisory=_OPS,
        )
        self._commit_s = histogram(
            "durably.commit.duration",
            "s",
            "Time to write one store transaction",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self._late = histogram(
            "durably.timer.lateness",
            "s",
            "How late timers fired after their due time",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        gauge = meter.create_observable_gauge
        gauge("durably.executions.live", [self._observe_live], "{execution}", "Actors in memory")
        gauge(
            "durably.executions.waiting_for_slot",
            [self._observe_runq],
            "{execution}",
            "Executions waiting for a live slot (max_live_executions)",
        )
        gauge(
            "durably.executions.parked",
            [self._observe_parked],
            "{execution}",
            "Unfinished executions with no actor in memory, as this worker counts them",
        )
        gauge("durably.queue.depth", [self._observe_queued], "{execution}", "Queued, by queue")
        gauge("durably.queue.running", [self._observe_running], "{execution}", "Admitted")
        self._lock = threading.Lock()  # gauges are read from the exporter's thread
        self._engines: dict[int, _Watched] = {}

    @classmethod
    def shared(cls) -> Telemetry:
        """The one instance over the global providers (``Engine(..., telemetry=True)``):
        instruments are made once per process, however many engines come and go."""
        with _SHARED_LOCK:
            if not _SHARED:
                _SHARED.append(cls())
            return _SHARED[0]

    # --- the runtime's hooks ---

    def run(self, actor: Any) -> _RunSpan:
        return _RunSpan(self, actor)

    def loaded(self, actor: Any, events: int) -> None:
        record = actor.record_
        span = self._trace.get_current_span()
        span.set_attribute("durably.run", record.run)
        span.set_attribute("durably.attempt", record.attempt)
        span.set_attribute("durably.replaying", events > 1)
        span.set_attribute("durably.log.events", events)
        if events == 1 and record.run == 1:
            self._started.add(1, {"workflow": record.workflow})

    def step(self, actor: Any, step_id: str, attempt: int) -> _StepSpan:
        workflow = actor.record_.workflow
        span = self._tracer.start_span(
            f"step {step_id}",
            attributes={
                "durably.execution.id": actor.execution_id,
                "durably.workflow": workflow,
                "durably.step.id": step_id,
                "durably.step.attempt": attempt,
                "durably.replaying": False,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return _StepSpan(self, span, token, workflow)

    def _committed(self, ops: int, seconds: float) -> None:
        self._batch.record(ops)
        self._commit_s.record(seconds)

    def _timer_late(self, ms: int) -> None:
        self._late.record(max(ms, 0) / 1000)

    # --- engines watched by the gauges ---

    def watch(self, engine: Any, parts: Parts) -> None:
        """Measure this running engine: its commits, its timers, its gauges."""
        parts.committer.on_commit = self._committed
        parts.scheduler.on_late = self._timer_late
        report = engine.last_recovery
        parked = 0 if report is None else report.parked + report.woken
        names = tuple(queue.name for queue in engine._queues)
        with self._lock:
            self._engines[id(parts)] = _Watched(engine, names, parked)

    def unwatch(self, parts: Parts) -> None:
        with self._lock:
            self._engines.pop(id(parts), None)

    def _watched(self, parts: Any) -> _Watched | None:
        return self._engines.get(id(parts))

    def _sum(self, figure: Callable[[_Watched], int]) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        with self._lock:
            watched = list(self._engines.values())
        total = 0
        for item in watched:
            try:
                total += figure(item)
            except Exception:  # a stopping engine, a dict changing under a read: skip it
                continue
        return [Observation(total)] if watched else []

    def _observe_live(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._sum(lambda w: w.engine.statistics().live)

    def _observe_runq(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._sum(lambda w: w.engine.statistics().queued)

    def _observe_parked(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._sum(lambda w: max(w.parked, 0))

    def _queue_figures(self, field: str) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        with self._lock:
            watched = list(self._engines.values())
        totals: dict[str, int] = {}
        for item in watched:
            for name in item.queues:
                try:
                    value = getattr(item.engine._queue_stats(name), field)
                except Exception:
                    continue
                totals[name] = totals.get(name, 0) + value
        return [Observation(value, {"queue": name}) for name, value in totals.items()]

    def _observe_queued(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._queue_figures("queued")

    def _observe_running(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._queue_figures("running")


class _Watched:
    __slots__ = ("engine", "parked", "queues")

    def __init__(self, engine: Any, queues: tuple[str, ...], parked: int) -> None:
        self.engine = engine
        self.queues = queues
        self.parked = parked


class _StepSpan:
    __slots__ = ("_span", "_telemetry", "_token", "_workflow")

    def __init__(self, telemetry: Telemetry, span: Span, token: object, workflow: str) -> None:
        self._telemetry, self._span, self._token, self._workflow = (
            telemetry,
            span,
            token,
            workflow,
        )

    def _close(self, outcome: str) -> None:
        self._telemetry._context.detach(self._token)
        self._span.set_attribute("durably.step.outcome", outcome)
        self._span.end()
        self._telemetry._steps.add(1, {"workflow": self._workflow, "outcome": outcome})

    def end(self) -> None:
        self._close("ok")

    def failed(self, exc: BaseException) -> None:
        if unwinds(exc):  # parked, cancelled or stopped: the body did not fail
            self._close("interrupted")
            return
        self._span.record_exception(exc)
        self._span.set_status(
            self._telemetry._trace.Status(
                self._telemetry._trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"
            )
        )
        self._close("error")


class _RunSpan:
    """The span of one actor run; its outcome is read off the actor as the run ends."""

    __slots__ = ("_actor", "_span", "_telemetry", "_token")

    def __init__(self, telemetry: Telemetry, actor: Any) -> None:
        self._telemetry = telemetry
        self._actor = actor

    def _parent(self) -> Context:
        from opentelemetry.context import Context

        trace = self._actor.record_.trace
        if trace is None:
            return Context()  # a root span, whatever context the task inherited
        return self._telemetry._propagate.extract({"traceparent": trace}, context=Context())  # type: ignore[no-any-return]

    def __enter__(self) -> None:
        telemetry, actor = self._telemetry, self._actor
        record = actor.record_
        self._span = span = telemetry._tracer.start_span(
            f"run {record.workflow}",
            context=self._parent(),
            attributes={
                "durably.execution.id": actor.execution_id,
                "durably.workflow": record.workflow,
                "durably.run": record.run,
                "durably.attempt": record.attempt,
            },
        )
        self._token = telemetry._context.attach(telemetry._trace.set_span_in_context(span))
        if record.status in _WAITING:
            self._count_parked(-1)

    def _count_parked(self, delta: int) -> None:
        watched = self._telemetry._watched(self._actor.parts)
        if watched is not None:
            watched.parked += delta

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        telemetry, span, actor = self._telemetry, self._span, self._actor
        telemetry._context.detach(self._token)
        record = actor.record_
        outcome = record.status
        trace = telemetry._trace
        if isinstance(exc, _Suspend):
            outcome = "parked"
            self._count_parked(1)
        elif isinstance(exc, trio.Cancelled):
            outcome = "cancelled" if actor.cancel_reason is not None else "stopped"
        elif isinstance(exc, _EngineFailure):
            outcome = "store_failed"
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"the store failed: {exc}"))
        elif exc is not None and not unwinds(exc):
            outcome = "error"
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        elif exc is not None:
            outcome = "interrupted"  # a replay that hung, or durably's own unwinding
        if exc is None and outcome in _FAILED and record.error is not None:
            error = record.error  # recorded as record_exception would, from the log's copy
            span.add_event(
                "exception",
                {
                    "exception.type": str(error.get("type", "")),
                    "exception.message": str(error.get("message", "")),
                    "exception.stacktrace": str(error.get("traceback", "")),
                },
            )
            message = f"{error.get('type')}: {error.get('message')}"
            span.set_status(trace.Status(trace.StatusCode.ERROR, message))
        span.set_attribute("durably.outcome", outcome)
        span.end()
        counter = {
            "completed": telemetry._completed,
            "failed": telemetry._failed,
            "compensation_failed": telemetry._failed,
            "cancelled": telemetry._cancelled,
        }.get(outcome)
        if counter is not None:
            counter.add(1, {"workflow": record.workflow, "status": outcome})
