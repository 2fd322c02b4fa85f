"""The README's main job: one real order workflow on the LMDB store, crashed and resumed.

Phase one runs in a child process that is killed with SIGKILL while the order sleeps;
this process then opens the same store, recovers the execution, sends it the signal it
waits for, and prints its history. A second order fails its payment and rolls back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
import click
import trio

import durably

from .core._errors import StorePathError
from .runtime._paths import check_path

Shipped = durably.Signal("shipped", dict)


@attrs.frozen
class Reservation:
    sku: str
    quantity: int
    hold_id: str


def reserve_stock(sku: str, quantity: int) -> Reservation:
    step = durably.current_step()
    assert step is not None
    return Reservation(sku, quantity, f"hold-{step.execution_id[-6:]}")


def release_stock(reservation: Reservation) -> None:
    click.echo(f"    compensation: released {reservation.hold_id}")


def charge_card(amount: int) -> str:
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
        print(eid, flush=True)  # the parent kills this process now
        await trio.sleep_forever()


async def _phase_two(store: str, eid: str) -> None:
    async with durably.Engine(store, workflows=[order]) as engine:
        report = engine.last_recovery
        assert report is not None
        click.echo(
            f"restarted: recovery found {report.parked} parked execution(s), "
            f"{report.timers} timer(s)"
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


def _print_history(engine: durably.Engine, eid: str) -> None:
    from .core._events import decode_all

    click.echo(f"history of {eid}:")
    for event in decode_all(engine.store.read_events(eid)):
        fields = {
            k: v
            for k, v in attrs.asdict(event, recurse=False).items()
            if k not in ("at", "duration_ms", "attempt") and v not in (None, {}, "")
        }
        detail = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        click.echo(f"  {event.tag:<24} {detail}"[:150])


def run_demo(store: str | None) -> None:
    """Run the demo (see the module docstring); ``store`` defaults to a temporary dir."""
    path = store or os.path.join(tempfile.mkdtemp(prefix="durably-demo-"), "shop.durably")
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
    eid = child.stdout.readline().strip()
    if not eid:
        child.wait()
        raise click.ClickException("the first phase did not start the order")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    click.echo(f"execution {eid} is sleeping; the worker process is killed (SIGKILL)\n")
    trio.run(_phase_two, path, eid)
    click.echo(f"\nstore kept at {Path(path)} (inspect it: durably --store {path} list)")


def phase_one(store: str) -> None:
    trio.run(_phase_one, store)
