"""durably.telemetry: spans and metrics through the SDK's in-memory exporters, and the
Prometheus endpoint scraped over real HTTP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import durably
from durably.core._errors import ConfigurationError
from durably.stores import LmdbStore

pytest.importorskip("opentelemetry.sdk", reason="needs durably[prometheus] (opentelemetry-sdk)")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from durably.telemetry import Telemetry, serve_prometheus


class Otel:
    """A tracer and a meter provider of one test's own (the global ones are set once)."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(prefix)]

    def metric(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """Each data point of ``name``: its attributes -> its value (a histogram: count)."""
        data = self.reader.get_metrics_data()
        points: dict[tuple[tuple[str, Any], ...], Any] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            key = tuple(sorted((point.attributes or {}).items()))
                            value = point.value if hasattr(point, "value") else point.count
                            points[key] = value
        return points


@pytest.fixture
def otel() -> Otel:
    return Otel()


flaky_calls: list[int] = []


def _flaky() -> str:
    flaky_calls.append(1)
    if len(flaky_calls) == 1:
        raise ConnectionError("the first try fails")
    return "b done"


@durably.workflow("two_steps")
async def two_steps(ctx: durably.Context, _: None) -> str:
    a = await ctx.step("a", lambda: "a done")
    b = await ctx.step("b", _flaky, retry=durably.Retry(max_attempts=3, initial=1.0))
    return f"{a}, {b}"


@durably.workflow("boom")
async def boom(ctx: durably.Context, _: None) -> None:
    await ctx.step("explode", _explode)


def _explode() -> None:
    raise ValueError("no luck")


@durably.workflow("waits")
async def waits(ctx: durably.Context, _: None) -> str:
    await ctx.step("before", lambda: 1)
    got = await ctx.wait_for_signal("go", step_id="go")
    return str(await ctx.step("after", lambda: got))


@durably.workflow("kid")
async def kid(ctx: durably.Context, n: int) -> int:
    return int(await ctx.step("double", lambda: n * 2))


@durably.workflow("parent")
async def parent(ctx: durably.Context, _: None) -> int:
    doubled: int = await ctx.child(kid, 21, step_id="kid")
    return doubled


async def _until_waiting(engine: durably.Engine, eid: str) -> None:
    with trio.fail_after(30):  # virtual seconds
        while (await engine.get_execution(eid)).status != "waiting":  # noqa: ASYNC110
            await trio.sleep(0.01)  # a poll of the record, with a deadline


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _store(tmp_path: Path) -> LmdbStore:
    # inline: commits on the loop, so that the autojump clock cannot run ahead of them
    return LmdbStore(tmp_path / "store", inline=True, map_size=1 << 22)


async def test_run_and_step_spans_with_a_retried_failure(
    otel: Otel, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    flaky_calls.clear()
    store = _store(tmp_path)
    async with durably.Engine(store, workflows=[two_steps], telemetry=otel.telemetry) as engine:
        eid = await engine.start(two_steps)
        assert await engine.wait(eid) == "a done, b done"
    (run,) = otel.named("run ")
    assert run.name == "run two_steps"
    assert _attrs(run) == {
        "durably.execution.id": eid,
        "durably.workflow": "two_steps",
        "durably.run": 1,
        "durably.attempt": 1,
        "durably.replaying": False,
        "durably.log.events": 1,
        "durably.outcome": "completed",
    }
    assert run.parent is None  # started outside any span: a root
    steps = otel.named("step ")
    assert [(s.name, _attrs(s)["durably.step.attempt"]) for s in steps] == [
        ("step a", 1),
        ("step b", 1),
        ("step b", 2),
    ]
    for span in steps:
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert _attrs(span)["durably.replaying"] is False
    failed = steps[1]
    assert failed.status.status_code is StatusCode.ERROR
    (exception,) = [e for e in failed.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert exception.attributes["exception.message"] == "the first try fails"
    assert steps[2].status.status_code is StatusCode.UNSET
    assert otel.metric("durably.executions.started") == {(("workflow", "two_steps"),): 1}
    assert otel.metric("durably.executions.completed") == {
        (("status", "completed"), ("workflow", "two_steps")): 1
    }
    assert otel.metric("durably.steps") == {
        (("outcome", "ok"), ("workflow", "two_steps")): 2,
        (("outcome", "error"), ("workflow", "two_steps")): 1,
    }
    batches = otel.metric("durably.commit.batch_size")
    assert batches[()] >= 4  # start, a, b's retry, b, the end: each one commit or more
    assert otel.metric("durably.commit.duration")[()] == batches[()]
    store.close()


async def test_a_failed_execution_records_its_error_on_the_run_span(
    otel: Otel, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = _store(tmp_path)
    async with durably.Engine(store, workflows=[boom], telemetry=otel.telemetry) as engine:
        eid = await engine.start(boom)
        with pytest.raises(durably.ExecutionFailedError):
            await engine.wait(eid)
    store.close()
    (run,) = otel.named("run ")
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description is not None and "no luck" in run.status.description
    (exception,) = [e for e in run.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "durably.StepError"
    assert "no luck" in str(exception.attributes["exception.message"])
    assert _attrs(run)["durably.outcome"] == "failed"
    (step,) = otel.named("step ")
    assert step.status.status_code is StatusCode.ERROR
    assert otel.metric("durably.executions.failed") == {
        (("status", "failed"), ("workflow", "boom")): 1
    }


async def test_a_replayed_step_gets_no_body_span(
    otel: Otel, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = _store(tmp_path)
    async with durably.Engine(store, workflows=[waits]) as engine:  # telemetry off
        eid = await engine.start(waits)
        await _until_waiting(engine, eid)
        assert engine._parts.telemetry is None
    store.close()
    store = _store(tmp_path)  # a restart: same store, new engine
    async with durably.Engine(store, workflows=[waits], telemetry=otel.telemetry) as engine:
        await engine.signal(eid, "go", 5)
        assert await engine.wait(eid) == "5"
    store.close()
    assert [s.name for s in otel.named("step ")] == ["step after"]  # "before" was replayed
    (run,) = otel.named("run ")
    assert _attrs(run)["durably.replaying"] is True
    assert _attrs(run)["durably.log.events"] >= 2
    assert otel.metric("durably.executions.started") == {}  # it began under the first engine
    assert otel.metric("durably.executions.completed") == {
        (("status", "completed"), ("workflow", "waits")): 1
    }


async def test_a_child_run_joins_its_parents_trace(
    otel: Otel, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = _store(tmp_path)
    async with durably.Engine(store, workflows=[parent, kid], telemetry=otel.telemetry) as engine:
        eid = await engine.start(parent)
        assert await engine.wait(eid) == 42
    store.close()
    runs = {s.name: s for s in otel.named("run ")}
    mine, child = runs["run parent"], runs["run kid"]
    assert child.context.trace_id == mine.context.trace_id
    assert child.parent is not None and child.parent.span_id == mine.context.span_id
    (double,) = otel.named("step double")
    assert double.context.trace_id == mine.context.trace_id


async def test_a_start_inside_a_span_propagates_its_trace(
    otel: Otel, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    tracer = otel.tracer_provider.get_tracer("the host")
    store = _store(tmp_path)
    async with durably.Engine(store, workflows=[kid], telemetry=otel.telemetry) as engine:
        with tracer.start_as_current_span("request") as request:
            eid = await engine.start(kid, 1)
        assert await engine.wait(eid) == 2
        stored = store.get_execution(eid)
        outside = await engine.start(kid, 2)  # no span: no trace stored, a root run span
        plain = store.get_execution(outside)
        assert plain is not None and plain.trace is None
        await engine.wait(outside)
    store.close()
    trace_id = format(request.get_span_context().trace_id, "032x")
    assert stored is not None and stored.trace is not None
    assert stored.trace.startswith(f"00-{trace_id}-")  # W3C: version, trace id, span id, flags
    runs = {_attrs(s)["durably.execution.id"]: s for s in otel.named("run ")}
    assert runs[eid].context.trace_id == request.get_span_context().trace_id
    parent_context = runs[eid].parent
    assert parent_context is not None
    assert parent_context.span_id == request.get_span_context().span_id
    assert runs[outside].parent is None


CLIENT = """
import sys, trio, durably
from opentelemetry.sdk.trace import TracerProvider

async def main():
    tracer = TracerProvider().get_tracer("a request handler")
    async with durably.Client(sys.argv[1]) as client:
        with tracer.start_as_current_span("handler") as span:
            eid = await client.start("kid", 4)
    print(eid, format(span.get_span_context().trace_id, "032x"))

trio.run(main)
"""


async def test_a_clients_start_propagates_its_trace(otel: Otel, tmp_path: Path) -> None:
    path = tmp_path / "store"
    async with durably.Engine(path, workflows=[kid], telemetry=otel.telemetry) as engine:
        done = await trio.run_process(
            [sys.executable, "-c", CLIENT, str(path)], capture_stdout=True, capture_stderr=True
        )
        eid, trace_id = done.stdout.decode().split()
        assert await engine.wait(eid, timeout=30) == 8
        assert engine.store.get_execution(eid).trace is not None  # type: ignore[union-attr]
    (run,) = otel.named("run ")
    assert format(run.context.trace_id, "032x") == trace_id


async def test_gauges_count_live_executions(
    otel: Otel, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = _store(tmp_path)
    async with durably.Engine(store, workflows=[waits], telemetry=otel.telemetry) as engine:
        eid = await engine.start(waits)
        await _until_waiting(engine, eid)
        assert otel.metric("durably.executions.live") == {(): 1}
        assert otel.metric("durably.executions.parked") == {(): 0}
    store.close()
    store = _store(tmp_path)  # restarted: recovery leaves the waiting execution parked
    async with durably.Engine(
        store, workflows=[waits], telemetry=otel.telemetry, max_live_executions=1
    ) as engine:
        assert otel.metric("durably.executions.parked") == {(): 1}
        assert otel.metric("durably.executions.live") == {(): 0}
        await engine.signal(eid, "go", 1)
        await engine.wait(eid)
        assert otel.metric("durably.executions.parked") == {(): 0}
    store.close()
    assert otel.metric("durably.executions.live") == {}  # no engine watched any more


def test_telemetry_takes_true_false_or_a_telemetry(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="telemetry takes True, False or a durably"):
        durably.Engine(tmp_path / "s", telemetry="yes")  # type: ignore[arg-type]
    assert Telemetry.shared() is Telemetry.shared()


async def test_the_prometheus_endpoint_serves_durably_metrics(tmp_path: Path) -> None:
    import httpx

    endpoint = serve_prometheus(0)
    try:
        async with durably.Engine(
            tmp_path / "store", workflows=[kid], telemetry=endpoint.telemetry
        ) as engine:
            eid = await engine.start(kid, 3)
            assert await engine.wait(eid) == 6
            response = await trio.to_thread.run_sync(httpx.get, endpoint.url)
    finally:
        endpoint.close()
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert any(
        line.startswith("durably_executions_completed_total{")
        and 'workflow="kid"' in line
        and line.endswith(" 1.0")
        for line in lines
    ), response.text
    assert any(line.startswith("durably_executions_live{") for line in lines), response.text
    assert any(line.startswith("durably_commit_duration_seconds_count") for line in lines)


def test_serve_prometheus_on_a_taken_port_says_so() -> None:
    endpoint = serve_prometheus(0)
    try:
        with pytest.raises(ConfigurationError, match="choose a free port"):
            serve_prometheus(endpoint.port)
    finally:
        endpoint.close()
