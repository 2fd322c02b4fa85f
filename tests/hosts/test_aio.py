"""durably.aio on a real asyncio loop: the trio guest, asyncio step bodies, cancellation,
shutdown, and the wrong host refused with the face that fits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import durably
import durably.aio

cleaned: list[str] = []


async def _fetch(name: str) -> str:
    await asyncio.sleep(0.01)  # fails under trio: this body must run on the asyncio loop
    return f"hi {name}"


async def _hang(tag: str) -> str:
    try:
        await asyncio.sleep(3600)
    finally:
        cleaned.append(tag)  # the asyncio task was cancelled and unwound
    return "never"


@durably.workflow("greet")
async def greet(ctx: durably.Context, name: str) -> str:
    greeting = await ctx.step("fetch", _fetch, name)
    try:
        await ctx.step("slow", _hang, "timeout", timeout=0.05)
    except durably.StepError as error:
        assert error.error_type == "TimeoutError"
    word = await ctx.wait_for_signal("go", step_id="go")
    return f"{greeting}, {word}"


@durably.workflow("stuck")
async def stuck(ctx: durably.Context, _: Any) -> str:
    return await ctx.step("hang", _hang, "cancel")


async def _until_waiting(
    face: Any, eid: str, status: durably.Status = durably.Status.WAITING
) -> None:
    """Read the execution as a user would, until it is in ``status`` (10 s at most)."""
    async with asyncio.timeout(10):
        while (await face.get_execution(eid)).status is not status:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def test_a_workflow_with_asyncio_steps_runs_under_an_asyncio_host(tmp_path: Path) -> None:
    async def main() -> tuple[str, durably.Status]:
        async with durably.aio.Engine(tmp_path / "s", workflows=[greet]) as engine:
            eid = await engine.start(greet, "ana")
            await _until_waiting(engine, eid)
            receipt = await engine.signal(eid, "go", "welcome")
            assert receipt.delivery is durably.SignalDelivery.DELIVERED
            result = await engine.wait(eid)
            return result, (await engine.get_execution(eid)).status

    cleaned.clear()
    assert asyncio.run(main()) == ("hi ana, welcome", durably.Status.COMPLETED)
    assert cleaned == ["timeout"]  # the step's timeout reached the asyncio task


def test_cancelling_an_execution_cancels_its_asyncio_step(tmp_path: Path) -> None:
    async def main() -> durably.Status:
        async with durably.aio.Engine(tmp_path / "s", workflows=[stuck]) as engine:
            eid = await engine.start(stuck)
            await _until_waiting(engine, eid, status=durably.Status.RUNNING)
            await engine.cancel(eid, reason="test")
            return (await engine.get_execution(eid)).status

    cleaned.clear()
    assert asyncio.run(main()) is durably.Status.CANCELLED
    assert cleaned == ["cancel"]


def test_leaving_the_host_parks_work_and_a_trio_engine_resumes_it(tmp_path: Path) -> None:
    async def first() -> str:
        async with durably.aio.Engine(tmp_path / "s", workflows=[greet]) as engine:
            eid = await engine.start(greet, "bo")
            await _until_waiting(engine, eid)
            return eid

    eid = asyncio.run(first())  # the loop ends with the execution waiting: parked

    async def later() -> str:
        async with durably.Engine(tmp_path / "s", workflows=[greet]) as engine:
            await engine.signal(eid, "go", "again")
            return str(await engine.wait(eid))

    assert trio.run(later) == "hi bo, again"  # the same log, under the other host


def test_a_cancelled_awaiter_leaves_the_engine_working(tmp_path: Path) -> None:
    async def main() -> str:
        async with durably.aio.Engine(tmp_path / "s", workflows=[greet]) as engine:
            eid = await engine.start(greet, "cy")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(engine.wait(eid), 0.2)  # cancels the trio job
            await engine.signal(eid, "go", "still")
            return str(await engine.wait(eid))

    assert asyncio.run(main()) == "hi cy, still"


def test_two_engines_share_one_guest_run_on_one_loop(tmp_path: Path) -> None:
    async def main() -> list[str]:
        async with (
            durably.aio.Engine(tmp_path / "a", workflows=[greet]) as a,
            durably.aio.Engine(tmp_path / "b", workflows=[greet]) as b,
        ):
            ids = [await a.start(greet, "a"), await b.start(greet, "b")]
            for face, eid in zip((a, b), ids, strict=True):
                await _until_waiting(face, eid)
                await face.signal(eid, "go", "x")
            return [str(await a.wait(ids[0])), str(await b.wait(ids[1]))]

    assert asyncio.run(main()) == ["hi a, x", "hi b, x"]


def test_the_trio_engine_under_asyncio_names_durably_aio(tmp_path: Path) -> None:
    async def main() -> None:
        async with durably.Engine(tmp_path / "s"):
            pass

    with pytest.raises(durably.ConfigurationError, match=r"use durably\.aio\.Engine"):
        asyncio.run(main())


async def test_durably_aio_under_trio_names_durably_engine(tmp_path: Path) -> None:
    with pytest.raises(durably.ConfigurationError, match=r"use durably\.Engine instead"):
        async with durably.aio.Engine(tmp_path / "s"):
            pass
    with pytest.raises(durably.ConfigurationError, match=r"use durably\.Client instead"):
        async with durably.aio.Client(tmp_path / "s"):
            pass


def test_an_aio_engine_that_cannot_open_raises_its_error(tmp_path: Path) -> None:
    async def main() -> None:
        async with durably.aio.Engine(tmp_path / "s"):
            async with durably.aio.Engine(tmp_path / "s"):  # the worker lock is held
                pass

    with pytest.raises(durably.StoreLockedError, match="held by another worker"):
        asyncio.run(main())


def test_ctrl_c_closes_the_engine_and_keeps_what_was_acknowledged(tmp_path: Path) -> None:
    store = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sigint_host.py")), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    started = [proc.stdout.readline().split()[1] for _ in range(5)]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert out.strip() == "closed", err
    assert "KeyboardInterrupt" in err  # asyncio.run's own Ctrl-C, not a durably crash

    async def check() -> list[str]:
        async with durably.Engine(store) as engine:
            return [(await engine.get_execution(eid)).status.value for eid in started]

    assert trio.run(check) == ["sleeping"] * 5


@durably.workflow("count")
async def count(ctx: durably.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.step(f"s{i}", _add, i)
    return total


async def _add(i: int) -> int:
    await asyncio.sleep(0)  # an asyncio body: many end in one loop iteration
    return i + 1


def test_many_calls_at_once_each_get_their_own_answer(tmp_path: Path) -> None:
    """Calls made together cross to the guest together; each still answers alone, a
    failing one with its own error type."""

    async def main() -> tuple[list[int], list[BaseException]]:
        async with durably.aio.Engine(tmp_path / "s", workflows=[count]) as engine:

            async def one(n: int) -> int:
                return int(await engine.wait(await engine.start(count, n)))

            results = await asyncio.gather(*(one(n % 7) for n in range(300)))
            errors = await asyncio.gather(
                *(engine.wait(f"nope-{i}") for i in range(20)), return_exceptions=True
            )
            return results, list(errors)

    results, errors = asyncio.run(main())
    assert results == [sum(range(1, n % 7 + 1)) for n in range(300)]
    assert all(type(e) is durably.UnknownExecutionError for e in errors)


def test_cancelling_one_awaiter_among_many_cancels_only_its_call(tmp_path: Path) -> None:
    async def main() -> tuple[list[str], str]:
        async with durably.aio.Engine(tmp_path / "s", workflows=[greet]) as engine:
            ids = [await engine.start(greet, f"p{i}") for i in range(10)]
            for eid in ids:
                await _until_waiting(engine, eid)
            waits = [asyncio.ensure_future(engine.wait(eid)) for eid in ids]
            await asyncio.sleep(0.05)  # every wait is running in the guest now
            waits[3].cancel()
            with pytest.raises(asyncio.CancelledError):
                await waits[3]
            for eid in ids:
                await engine.signal(eid, "go", "ok")
            done = [str(await w) for i, w in enumerate(waits) if i != 3]
            # The worker whose call was cancelled has ended; the next calls still run.
            return done, str(await engine.wait(ids[3]))

    done, again = asyncio.run(main())
    assert done == [f"hi p{i}, ok" for i in range(10) if i != 3]
    assert again == "hi p3, ok"


def test_awaiters_cancelled_at_any_point_of_the_crossing(tmp_path: Path) -> None:
    """Before the batch crosses, before its job begins, while it runs: each cancel ends
    that call alone, and the engine goes on answering."""

    async def main() -> str:
        async with durably.aio.Engine(tmp_path / "s", workflows=[greet]) as engine:
            eid = await engine.start(greet, "dd")
            await _until_waiting(engine, eid)
            for turns in range(8):
                waiter = asyncio.ensure_future(engine.wait(eid))
                for _ in range(turns):
                    await asyncio.sleep(0)
                waiter.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiter
            await engine.signal(eid, "go", "late")
            return str(await engine.wait(eid))

    assert asyncio.run(main()) == "hi dd, late"


def test_a_call_after_the_face_closed_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with durably.aio.Engine(tmp_path / "s", workflows=[greet]) as engine:
            pass
        await engine.get_execution("x")

    with pytest.raises(durably.ConfigurationError, match="is not open"):
        asyncio.run(main())
