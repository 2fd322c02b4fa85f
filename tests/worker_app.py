"""Workflows for the worker subprocesses of tests/test_worker.py, run from the repository's
root as ``durably worker tests.worker_app:WORKFLOWS`` (or ``:options``).

"held" runs a step whose body is held running on files, not on time: it appends a line to
``MARKERS/NAME.runs``, writes ``MARKERS/NAME.started`` and returns once
``MARKERS/NAME.release`` exists. Its next step, "after", appends to
``MARKERS/NAME.after``; then it waits for the signal "finish".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import trio

import durably

log = logging.getLogger("tests.worker_app")


async def hold(markers: str, name: str) -> str:
    folder = Path(markers)
    with (folder / f"{name}.runs").open("a") as runs:
        runs.write("run\n")
    log.info("holding %s", name)  # inside a step body: the worker's log names the step
    (folder / f"{name}.started").write_text("")
    while not (folder / f"{name}.release").exists():  # noqa: ASYNC110 (a file, no Event)
        await trio.sleep(0.01)
    return f"{name} released"


def after(markers: str, name: str) -> str:
    with (Path(markers) / f"{name}.after").open("a") as runs:
        runs.write("run\n")
    return "after"


@durably.workflow("held")
async def held(ctx: durably.Context, args: dict[str, str]) -> str:
    released = await ctx.step("hold", hold, args["markers"], args["name"])
    await ctx.step("after", after, args["markers"], args["name"])
    await ctx.wait_for_signal("finish", step_id="finish")
    return released


@durably.workflow("quick")
async def quick(ctx: durably.Context, value: Any) -> Any:
    return await ctx.step("echo", lambda: value)


@durably.workflow("waiter")
async def waiter(ctx: durably.Context, _: Any) -> Any:
    return await ctx.wait_for_signal("go", step_id="go")


WORKFLOWS = [held, quick, waiter]

NOT_WORKFLOWS = 42

MIXED = [quick, "waiter"]


def options() -> dict[str, Any]:
    """The options form: a queue this worker admits for, and a fast inbox look."""
    return {
        "workflows": WORKFLOWS,
        "queues": [durably.Queue("serial", concurrency=1)],
        "poll_interval": 0.2,
    }


def many_options() -> dict[str, Any]:
    """For workers of many (``--many-workers``): no limited queue, a fast inbox look."""
    return {"workflows": WORKFLOWS, "poll_interval": 0.2}


def bad_options() -> dict[str, Any]:
    return {"workflows": WORKFLOWS, "max_live": 3}
