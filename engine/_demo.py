"""The README's main job: one real order workflow on the LMDB store, crashed and resumed.

Phase one runs in a child process that is killed with SIGKILL while the order sleeps;
this process then opens the same store, recovers the execution, sends it the signal it
waits for, and prints its history. A second order fails its payment and rolls back.

Every step body says when it runs and counts its runs in its process, so the closing
lines state what the history proves from what was counted (the steps recorded before the
kill did not run again), not from what should have happened.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import attrs
import click
import trio

import durably

from ._cli_common import event_fields
from .core._errors import StorePathError
from .runtime._paths import check_path

Shipped = durably.Signal("shipped", dict)

#: The step bodies this process ran, by execution id.
_RUNS: dict[str, list[str]] = {}


def _ran(name: str) -> str:
    """Count a step body's run in this process and say so; the execution's id."""
    step = durably.current_step()
    assert step is not None
    _RUNS.setdefault(step.execution_id, []).append(name)
    click.echo(f"    step {name} runs (process {os.getpid()})")
    return step.execution_id


@attrs.frozen
class Reservation:
    sku: str
    quantity: int
    hold_id: str


def reserve_stock(sku: str, quantity: int) -> Reservation:
    eid = _ran("reserve-stock")
    return Reservation(sku, quantity, f"hold-{eid[-6:]}")


def release_stock(reservation: Reservation) -> None:
    click.echo(f"    compensation: released {reservation.hold_id}")


def charge_card(amount: int) -> str:
    _ran("charge-card")
    if amount > 1000:
        raise RuntimeError("card declined: amount over the limit")
    return f"charge-{amount}"


def refund(charge: str) -> None:
    click.echo(f"    compensation: refunded {charge}")


@durably.workflow("order", category="shop", defaults={"sku": "book", "quantity": 1, "amount": 30})
async def order(ctx: durably.Context, data: dict[str, Any]) -> dict[str, Any]:
    reservation = await ctx.step(
        "reserve-stock", reserve_stock, data["sku"], data["quantity"], compensate=release_stock
    )
    try:
        charge = await ctx.step("charge-card", charge_card, data["amount"], compensate=refund)
    except durably.StepError as exc:
        await ctx.note("payment failed, rolling back", reason=exc.error_message)
        await ctx.rollback()
        return {"status": "cancelled", "reason": exc.error_message}
    shipping = await ctx.switch(
        "choose-shipping",
        data["amount"],
        [durably.Branch("express", match=lambda amount: amount >= 100, run=lambda _: "express")],
        default=durably.Branch("standard", run=lambda _: "standard"),
    )
    await ctx.sleep(2, step_id="cool-off")  # a durable timer: survives the crash below
    match await ctx.wait_for_signal(Shipped, timeout=60, step_id="await-shipping"):
        case durably.Received(payload=info):
            tracking = info["tracking"]
        case durably.TimedOut():
            tracking = None
    return {
        "status": "shipped" if tracking else "unshipped",
        "hold": reservation.hold_id,
        "charge": charge,
        "shipping": shipping,
        "tracking": tracking,
    }


async def _phase_one(store: str) -> None:
    async with durably.Engine(store, workflows=[order]) as engine:
        eid = await engine.start(order, {"sku": "lamp", "quantity": 2, "amount": 120})
        # Polling the record keeps the demo to the public API a reader would use.
        while (await engine.get_execution(eid)).status is not durably.Status.SLEEPING:  # noqa: ASYNC110
            await trio.sleep(0.01)
        click.echo(f"sleeping {eid}")  # the parent kills this process now
        sys.stdout.flush()
        await trio.sleep_forever()


async def _phase_two(store: str, eid: str) -> None:
    async with durably.Engine(store, workflows=[order]) as engine:
        report = engine.last_recovery
        assert report is not None
        click.echo(
            f"restarted in process {os.getpid()}: recovery found {report.parked} parked "
            f"execution(s), {report.timers} timer(s)"
        )
        await trio.sleep(2.2)
        outcome = await engine.signal(eid, Shipped, {"tracking": "TRK-991"}, dedup_key="ship-1")
        click.echo(f"signal 'shipped': {outcome.delivery.value}")
        result = await engine.wait(eid, timeout=30)
        click.echo(f"result: {result}\n")
        _print_history(engine, eid)

        click.echo("\nA second order whose payment fails rolls back its completed steps:")
        declined = await engine.start_and_wait(
            order, {"sku": "piano", "quantity": 1, "amount": 5000}
        )
        click.echo(f"result: {declined.data}\n")
        _print_history(engine, declined.execution_id)


def _proof(eid: str, child_pid: int, before: list[str]) -> None:
    """What the first order's history proves, from the runs each process counted."""
    again = _RUNS.get(eid, [])
    ran = " and ".join(before) or "no step"
    verdict = (
        "ran none of its step bodies again"
        if not again
        else f"ran {', '.join(again)} again (a replay should not have)"
    )
    click.echo("\nWhat the history proves:")
    click.echo(
        textwrap.fill(
            f"{ran} ran once, in process {child_pid}, before it was killed: each has one "
            f"step.completed in the log. The restarted process {os.getpid()} replayed those "
            f"results and {verdict} (each body counts its runs); the sleep and the signal "
            "wait went on where the log left them.",
            width=90,
            initial_indent="  ",
            subsequent_indent="  ",
        )
    )


def _print_history(engine: durably.Engine, eid: str) -> None:
    from .core._events import decode_all

    click.echo(f"history of {eid}:")
    for event in decode_all(engine.store.read_events(eid)):
        detail = event_fields(event, leave_out=_LEAVE_OUT)
        click.echo(f"  {event.tag:<24} {detail}"[:150])


#: What the history leaves out: when (the times in it are real ones), how long, which try.
_LEAVE_OUT = frozenset({"at", "duration_ms", "attempt"})


def _command() -> str:
    """This installation's ``durably`` as a shell can run it from here: the console
    script on ``PATH``, else its path (relative when under the current directory), else
    ``python -m durably`` with this interpreter."""
    script = Path(sys.executable).parent / "durably"
    if not script.exists():
        return f"{shlex.quote(_shown(Path(sys.executable)))} -m durably"
    found = shutil.which("durably")
    if found is not None and Path(found).resolve() == script.resolve():
        return "durably"
    return shlex.quote(_shown(script))


def _shown(path: Path) -> str:
    """``path`` (absolute, as given: a venv's python is a symlink), relative to the
    current directory when it is under it (and that is not ``/``), with a ``/`` in it so
    that a shell does not look it up on ``PATH``."""
    absolute, here = Path(os.path.abspath(path)), Path.cwd()
    if here == Path(here.anchor) or not absolute.is_relative_to(here):
        return str(absolute)
    relative = str(absolute.relative_to(here))
    return relative if os.sep in relative else f".{os.sep}{relative}"


def run_demo(store: str | None) -> None:
    """Run the demo (see the module docstring); ``store`` defaults to a temporary dir."""
    path = os.path.abspath(
        store or os.path.join(tempfile.mkdtemp(prefix="durably-demo-"), "shop.durably")
    )
    try:  # here, not in the child: a bad --store says so in one line
        check_path(Path(path), face="Engine", create=True)
    except StorePathError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"store: {path}\n")
    click.echo("phase one, in a child process: start an order and run until it sleeps")
    child = subprocess.Popen(
        [sys.executable, "-m", "durably", "demo", "--phase-one", "--store", path],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    eid, before = "", []
    for line in child.stdout:  # the child's step runs, then the order's id
        if line.startswith("sleeping "):
            eid = line.split()[1]
            break
        click.echo(line.rstrip("\n"))
        if line.lstrip().startswith("step "):
            before.append(line.split()[1])
    if not eid:
        child.wait()
        raise click.ClickException("the first phase did not start the order")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    click.echo(f"execution {eid} is sleeping; the worker process is killed (SIGKILL)\n")
    trio.run(_phase_two, path, eid)
    _proof(eid, child.pid, before)
    command = f"{_command()} --store {shlex.quote(path)}"
    click.echo(f"\nThe store is kept at {path}; look inside it (these run as printed):")
    click.echo(f"  {command} list")
    click.echo(f"  {command} show {eid}")


def phase_one(store: str) -> None:
    trio.run(_phase_one, store)
