"""``durably worker``: the real console script in subprocesses on an LMDB store, stopped by
real signals; its health endpoints over real HTTP; ``engine.drain`` in virtual time.

Step bodies are held running on files (``tests/worker_app.py``), never on sleeps: a test
waits for ``NAME.started`` before it signals, and writes ``NAME.release`` to let go.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from click.testing import CliRunner

import durably
import durably.sync
from durably._cli import main
from durably._worker_health import WorkerState, serve_health
from durably._worker_log import JsonFormatter, StepContext, TextFormatter
from durably.stores import MemoryStore

ROOT = Path(__file__).resolve().parent.parent
DURABLY = str(Path(sys.executable).parent / "durably")
APP = "tests.worker_app"
LOG = ("--log-format", "json")

pytestmark = pytest.mark.slow


class Worker:
    """One ``durably worker`` process, its JSON log in a file."""

    def __init__(self, tmp_path: Path, store: Path, target: str, *options: str) -> None:
        self.log = tmp_path / f"worker-{time.monotonic_ns()}.log"
        with self.log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [DURABLY, "worker", f"{APP}:{target}", "--store", str(store), *LOG, *options],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def lines(self) -> list[dict[str, Any]]:
        text = self.log.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line being written is left for later
        return [json.loads(line) for line in complete.splitlines()]

    def wait_for(self, message: str, timeout: float = 30) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for line in self.lines():
                if line["message"].startswith(message):
                    return line
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited: {self.log.read_text()}")
            return None

        return until(found, timeout, f"log line {message!r}")

    def health_url(self) -> str:
        line = self.wait_for("health endpoints on ")
        return str(line["message"].split()[3].removesuffix("/healthz"))

    def stop(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(target: str = "WORKFLOWS", *options: str) -> Worker:
        worker = Worker(tmp_path, tmp_path / "store", target, *options)
        started.append(worker)
        worker.wait_for("worker ready")
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


def steps_of(store: Path, eid: str) -> list[str]:
    """The step ids recorded completed in the execution's log."""

    async def read() -> list[str]:
        async with durably.Client(store) as client:
            return [e.step_id for e in await client.audit(eid) if e.kind == "step_completed"]

    return trio.run(read)


def runs(markers: Path, name: str) -> int:
    path = markers / name
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sigterm_lets_the_running_step_finish_parks_the_rest_and_exits_0(
    workers: Callable[..., Worker], markers: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    worker = workers("WORKFLOWS", "--health", "0")
    url = worker.health_url()
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["recovery"]["resumed"] == 0
    with durably.sync.Client(store) as client:
        held = client.start("held", {"markers": str(markers), "name": "a"})
        waiter = client.start("waiter", None)
        until((markers / "a.started").exists, 30, "the step body to run")
        worker.proc.send_signal(signal.SIGTERM)
        draining = until(
            lambda: (r := httpx.get(f"{url}/readyz")).status_code == 503 and r.json(), 30, "503"
        )
        assert draining["status"] == "draining"
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive while it drains
        late = client.start("quick", 7)  # durable, but no longer taken by this worker
        assert worker.proc.poll() is None  # the held body keeps the drain open
        (markers / "a.release").write_text("")
        assert worker.proc.wait(30) == 0
        assert client.get_execution(late).status == durably.Status.PENDING
        assert client.get_execution(waiter).status == durably.Status.WAITING
    assert steps_of(store, held) == ["hold"]  # finished and recorded; "after" never began
    assert runs(markers, "a.after") == 0
    messages = [line["message"] for line in worker.lines()]
    assert "SIGTERM: draining" in messages and "drained: no step body runs" in messages
    in_body = next(line for line in worker.lines() if line["message"] == "holding a")
    assert (in_body["execution_id"], in_body["step_id"]) == (held, "hold")

    second = workers("WORKFLOWS", "--health", "0")  # it finishes everything, "hold" not again
    recovered = httpx.get(f"{second.health_url()}/readyz").json()["recovery"]
    assert (recovered["resumed"], recovered["parked"]) == (2, 1)  # held and late; the waiter
    with durably.sync.Client(store) as client:
        client.signal(held, "finish")
        client.signal(waiter, "go", {"ok": True})
        assert client.wait(held) == "a released"
        assert client.wait(waiter) == {"ok": True}
        assert client.wait(late) == 7
    assert (runs(markers, "a.runs"), runs(markers, "a.after")) == (1, 1)
    assert second.stop() == 0
    ended = {
        line["execution_id"]: line["workflow"]
        for line in second.lines()
        if line["message"].endswith(" completed") and "execution_id" in line
    }
    assert ended == {held: "held", waiter: "waiter", late: "quick"}


def test_a_second_signal_stops_at_once_and_loses_nothing_acknowledged(
    workers: Callable[..., Worker], markers: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    worker = workers("WORKFLOWS", "--grace", "600")
    with durably.sync.Client(store) as client:
        done = client.start("quick", "kept")
        assert client.wait(done) == "kept"
        waiter = client.start("waiter", None)
        assert client.signal(waiter, "go", "payload").accepted
        held = client.start("held", {"markers": str(markers), "name": "b"})
        until((markers / "b.started").exists, 30, "the step body to run")
    worker.proc.send_signal(signal.SIGTERM)
    worker.wait_for("draining: no new work")
    began = time.monotonic()
    worker.proc.send_signal(signal.SIGINT)
    assert worker.proc.wait(10) == 128 + signal.SIGINT
    assert time.monotonic() - began < 5  # not the 600 s grace
    assert "hold" not in steps_of(store, held)  # cancelled mid-body: it runs again

    (markers / "b.release").write_text("")
    second = workers()
    with durably.sync.Client(store) as client:
        client.signal(held, "finish")
        assert client.wait(held) == "b released"
        assert client.wait(waiter) == "payload"  # the acknowledged signal was kept
        assert client.wait(done) == "kept"
    assert runs(markers, "b.runs") == 2  # at least once: the interrupted body ran again
    assert second.stop() == 0


def test_the_options_form_declares_a_queue_and_the_drain_admits_nothing(
    workers: Callable[..., Worker], markers: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    worker = workers("options")
    with durably.sync.Client(store) as client:
        first = client.enqueue("serial", "quick", 1)
        assert client.wait(first) == 1  # admitted: the worker declares "serial"
        held = client.start("held", {"markers": str(markers), "name": "c"})
        until((markers / "c.started").exists, 30, "the step body to run")
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_for("draining: no new work")
        queued = client.enqueue("serial", "quick", 2)
        (markers / "c.release").write_text("")
        assert worker.proc.wait(30) == 0
        assert client.get_execution(queued).status == durably.Status.QUEUED
    assert steps_of(store, held) == ["hold"]
    second = workers("options")
    with durably.sync.Client(store) as client:
        assert client.wait(queued) == 2
    assert second.stop() == 0


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("tests.worker_app", "is not MODULE:ATTR"),
        ("tests.no_such_module:WORKFLOWS", "no module named 'tests.no_such_module'"),
        ("tests.worker_app:NOPE", "has no attribute 'NOPE'"),
        ("tests.worker_app:NOT_WORKFLOWS", "is a int (42)"),
        ("tests.worker_app:MIXED", "'waiter') is not a workflow"),
        ("tests.worker_app:bad_options", "name 'max_live', which durably.Engine does not take"),
        ("tests.worker_app:hold", "takes arguments"),
    ],
)
def test_a_bad_module_attr_is_a_usage_error_saying_what_to_give(
    target: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["worker", target, "--store", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not (tmp_path / "s").exists()  # nothing was opened


def test_the_console_script_refuses_a_bad_target_with_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DURABLY_STORE"}
    missing = subprocess.run(
        [DURABLY, "worker", f"{APP}:WORKFLOWS"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "no store given" in missing.stderr
    bad = subprocess.run(
        [DURABLY, "--store", str(tmp_path / "s"), "worker", f"{APP}:NOT_WORKFLOWS"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "a list of @durably.workflow definitions, or a function returning" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = subprocess.run(
            [
                DURABLY,
                "worker",
                f"{APP}:WORKFLOWS",
                "--store",
                str(tmp_path / "s"),
                "--health",
                port,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    assert busy.returncode == 2
    assert f"cannot serve the health endpoints on 127.0.0.1:{port}: [Errno" in busy.stderr


def test_a_second_worker_on_the_store_exits_4_naming_the_holder(
    workers: Callable[..., Worker], tmp_path: Path
) -> None:
    first = workers()
    second = Worker(tmp_path, tmp_path / "store", "WORKFLOWS")
    assert second.proc.wait(30) == 4
    assert f"pid {first.proc.pid}" in second.log.read_text()
    assert first.stop() == 0


# --- the health endpoints, in process over real HTTP ---


async def test_readyz_answers_503_until_ready_and_again_once_draining() -> None:
    state = WorkerState()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_health, state, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=url) as http:
            starting = await http.get("/readyz")
            assert (starting.status_code, starting.json()) == (503, {"status": "starting"})
            alive = await http.get("/healthz")
            assert (alive.status_code, alive.json()["phase"]) == (200, "starting")
            async with durably.Engine(MemoryStore()) as engine:
                state.engine, state.phase = engine, "ready"
                ready = await http.get("/readyz")
                assert ready.status_code == 200
                assert ready.json()["live"] == 0 and ready.json()["recovery"]["parked"] == 0
                state.phase = "draining"
                assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/nowhere")).status_code == 404
            assert (await http.post("/readyz")).status_code == 405
        nursery.cancel_scope.cancel()


# --- the log formats ---


def test_log_lines_carry_the_execution_and_the_step_that_logged_them() -> None:
    import logging

    record = logging.LogRecord("durably", logging.INFO, __file__, 1, "x %s", ("done",), None)
    record.execution_id, record.workflow = "e1", "order"
    line = json.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("level", "logger", "message", "execution_id", "workflow")} == {
        "level": "INFO",
        "logger": "durably",
        "message": "x done",
        "execution_id": "e1",
        "workflow": "order",
    }
    assert line["time"].endswith("+00:00")
    assert (
        TextFormatter().format(record).endswith("durably: x done [execution_id=e1 workflow=order]")
    )

    seen: list[logging.LogRecord] = []

    def body() -> None:
        inner = logging.LogRecord("app", logging.INFO, __file__, 1, "in a body", (), None)
        StepContext().filter(inner)
        seen.append(inner)

    @durably.workflow("logs")
    async def logs(ctx: durably.Context, _: None) -> None:
        await ctx.step("talk", body)

    async def go() -> str:
        async with durably.Engine(MemoryStore(), workflows=[logs]) as engine:
            eid = await engine.start(logs, None)
            await engine.wait(eid)
            return eid

    eid = trio.run(go)
    assert (seen[0].execution_id, seen[0].step_id) == (eid, "talk")  # type: ignore[attr-defined]


# --- engine.drain in virtual time ---

BODIES: list[str] = []


async def slow(name: str, seconds: float) -> str:
    BODIES.append(name)
    await trio.sleep(seconds)
    return name


@durably.workflow("two-steps")
async def two_steps(ctx: durably.Context, seconds: float) -> list[str]:
    return [await ctx.step("one", slow, "one", seconds), await ctx.step("two", slow, "two", 1)]


@durably.workflow("naps")
async def naps(ctx: durably.Context, _: None) -> str:
    await ctx.sleep(5, step_id="nap")
    return await ctx.step("woke", slow, "woke", 0)


async def test_drain_waits_for_the_running_body_and_starts_nothing_new(
    autojump_clock: trio.testing.MockClock,
) -> None:
    BODIES.clear()
    store, clock = MemoryStore(), durably.Clock()
    workflows = [two_steps, naps]
    async with durably.Engine(store, workflows=workflows, clock=clock) as engine:
        running = await engine.start(two_steps, 10)
        napping = await engine.start(naps, None)
        await trio.sleep(1)
        began = trio.current_time()
        assert await engine.drain(grace=30) is True
        assert 9 <= trio.current_time() - began < 9.1  # the body's remaining 9 s
        late = await engine.start(two_steps, 0)
        await trio.sleep(10)  # past the nap's timer: it is not resumed while draining
        assert BODIES == ["one"]
        assert engine.statistics().live == 0
    assert [store.get_execution(e).status for e in (running, napping, late)] == [  # type: ignore[union-attr]
        "running",
        "sleeping",
        "running",
    ]
    async with durably.Engine(store, workflows=workflows, clock=clock) as engine:
        assert await engine.wait(running) == ["one", "two"]
        assert await engine.wait(napping) == "woke"
        assert await engine.wait(late) == ["one", "two"]
    assert sorted(BODIES) == ["one", "one", "two", "two", "woke"]  # "one" not again


async def test_drain_returns_false_when_the_grace_runs_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    BODIES.clear()
    store, clock = MemoryStore(), durably.Clock()
    async with durably.Engine(store, workflows=[two_steps], clock=clock) as engine:
        eid = await engine.start(two_steps, 100)
        await trio.sleep(1)
        began = trio.current_time()
        assert await engine.drain(grace=5) is False
        assert trio.current_time() - began == pytest.approx(5, abs=0.1)
        with pytest.raises(durably.ConfigurationError, match="at least 0"):
            await engine.drain(grace=-1)
    async with durably.Engine(store, workflows=[two_steps], clock=clock) as engine:
        assert await engine.wait(eid) == ["one", "two"]
    assert BODIES == ["one", "one", "two"]  # the cancelled body ran again
    with pytest.raises(durably.DurablyError, match="not running"):
        await engine.drain()


@durably.workflow("fan-out")
async def fan_out(ctx: durably.Context, _: None) -> list[str]:
    return await ctx.gather(ctx.step("short", slow, "short", 3), ctx.step("long", slow, "long", 10))


async def test_a_gather_runs_on_until_its_members_are_done_and_idle_drains_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    BODIES.clear()
    store, clock = MemoryStore(), durably.Clock()
    async with durably.Engine(store, workflows=[fan_out, naps], clock=clock) as engine:
        eid = await engine.start(fan_out, None)
        await trio.sleep(1)
        began = trio.current_time()
        assert await engine.drain(grace=30) is True
        assert trio.current_time() - began >= 9  # the long member's body finished too
    async with durably.Engine(store, workflows=[fan_out, naps], clock=clock) as engine:
        assert await engine.wait(eid) == ["short", "long"]
        napping = await engine.start(naps, None)
        await trio.sleep(1)
        assert engine.statistics().live == 1  # asleep in memory
        assert await engine.drain(grace=0) is True  # no body runs: nothing to wait for
        await trio.sleep(0.1)
        assert engine.statistics().live == 0  # parked at once
    assert sorted(BODIES) == ["long", "short"]  # recorded by the drained engine, not again
    assert store.get_execution(napping).status == "sleeping"  # type: ignore[union-attr]


async def test_a_draining_engine_admits_nothing_from_its_queues(
    autojump_clock: trio.testing.MockClock,
) -> None:
    BODIES.clear()
    store, clock, queue = MemoryStore(), durably.Clock(), durably.Queue("serial", concurrency=1)
    options: dict[str, Any] = {"workflows": [two_steps], "clock": clock, "queues": [queue]}
    async with durably.Engine(store, **options) as engine:
        delayed = await engine.enqueue("serial", two_steps, 0, delay=5)
        assert await engine.drain(grace=0) is True
        offered = await engine.enqueue("serial", two_steps, 0)
        await trio.sleep(10)  # past the delay
        assert [store.get_execution(e).status for e in (delayed, offered)] == ["queued"] * 2  # type: ignore[union-attr]
    async with durably.Engine(store, **options) as engine:
        assert await engine.wait(delayed) == await engine.wait(offered) == ["one", "two"]


async def test_a_draining_engine_fires_no_schedule(autojump_clock: trio.testing.MockClock) -> None:
    BODIES.clear()
    store, clock = MemoryStore(), durably.Clock()
    async with durably.Engine(store, workflows=[two_steps], clock=clock) as engine:
        sid = await engine.schedule(two_steps, 0, delay=5)
        assert await engine.drain(grace=0) is True
        await trio.sleep(10)  # past the fire: it stays due in the store
        assert (await engine.get_schedule(sid)).executions == ()
    async with durably.Engine(store, workflows=[two_steps], clock=clock) as engine:
        [fired] = await until_fired(engine, sid)
        assert await engine.wait(fired) == ["one", "two"]


async def until_fired(engine: durably.Engine, sid: str) -> tuple[str, ...]:
    with trio.fail_after(60):
        while True:
            executions = (await engine.get_schedule(sid)).executions
            if executions:
                return executions
            await trio.sleep(0.1)


def test_metrics_serves_prometheus_figures_of_what_the_worker_ran(
    workers: Callable[..., Worker], tmp_path: Path
) -> None:
    import httpx

    worker = workers("WORKFLOWS", "--metrics", "0")
    url = str(worker.wait_for("metrics on ")["message"].split()[-1])
    with durably.sync.Client(tmp_path / "store") as client:
        eid = client.start("quick", "hello")
        assert client.wait(eid, timeout=30) == "hello"

    # The completion is counted once its commit is seen: poll the scrape, not a sleep.
    def scraped() -> str | None:
        body = httpx.get(url).text
        counted = any(
            line.startswith("durably_executions_completed_total{")
            and 'workflow="quick"' in line
            and line.endswith(" 1.0")
            for line in body.splitlines()
        )
        return body if counted else None

    text = until(scraped, 30, "the count")
    assert "durably_executions_live" in text and "durably_steps_total" in text
    assert worker.stop() == 0


def test_metrics_on_a_taken_port_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = subprocess.run(
            [DURABLY, "worker", f"{APP}:WORKFLOWS", "--metrics", port, "--store", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    assert busy.returncode == 2, busy.stderr
    assert port in busy.stderr
