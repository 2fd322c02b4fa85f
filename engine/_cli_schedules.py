"""``durably schedules``: list the store's schedules, or pause, resume, remove or trigger
one.

Pausing, resuming and removing are the schedule calls of ``docs/scheduling.md``, run by
the store's worker when one runs (its fires write the same records) and here, holding
the worker lock, when none does.

``trigger`` starts the schedule's workflow now, with the schedule's input, through the
client, as ``durably start`` would: the execution names the schedule (its
``schedule_id``) and its ``ctx.scheduled_at`` is the trigger's time, so the run looks like
a fire to the workflow. It is not one of the schedule's fires: its cadence, its next
fire, ``runs`` and ``executions`` are unchanged (they are the worker's to write, one fire
at a time), and ``overlap`` is not consulted: the command was asked for a run. It works
on a paused or done schedule too.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import attrs
import click

from ._cli_common import BadUsage, complete_schedule_id, run, stamp, to_json, utc_option
from .core._errors import ConfigurationError, PayloadError
from .core._schedule import Schedule
from .remote._client import Client


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@utc_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List schedules: id, status, workflow, cadence, next fire time and run count.

    With a command: pause, resume, remove or trigger one schedule.
    """
    if ctx.invoked_subcommand is not None:
        if as_json:
            raise BadUsage("--json goes with the listing: `durably schedules --json`")
        return

    async def go(client: Client) -> list[Schedule]:
        return await client.list_schedules()

    items = run(ctx, go)
    if as_json:
        click.echo(to_json([schedule_document(item) for item in items]))
        return
    for line in schedule_lines(items):
        click.echo(line)
    if not items:
        click.echo("no schedules", err=True)


def schedule_document(schedule: Schedule) -> dict[str, Any]:
    """A schedule for machines: its fields, times as ISO-8601 UTC, and its kind."""
    data = attrs.asdict(schedule, recurse=False)
    for key, value in data.items():
        if hasattr(value, "astimezone"):
            data[key] = value.astimezone(UTC).isoformat(timespec="milliseconds")
    data["status"] = schedule.status.value
    data["executions"] = list(schedule.executions)
    data["kind"] = schedule.kind
    return data


def cadence_text(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    if schedule.interval is not None:
        return f"every {schedule.interval:g} s"
    return f"once at {stamp(schedule.at)}"


def schedule_lines(items: list[Schedule]) -> list[str]:
    """One aligned line per schedule; the last fire's error, if any, at its end."""
    rows = [
        [
            s.id,
            s.status.value,
            s.workflow,
            cadence_text(s),
            f"next {stamp(s.next_fire_at)}",
            f"runs {s.runs}" + (f" (skipped {s.skipped})" if s.skipped else ""),
        ]
        for s in items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    lines = []
    for schedule, row in zip(items, rows, strict=True):
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        if schedule.last_error:
            line += f"  last error: {schedule.last_error}"
        lines.append(line.rstrip())
    return lines


@schedules.command()
@click.argument("schedule_id", shell_complete=complete_schedule_id)
@click.pass_context
def pause(ctx: click.Context, schedule_id: str) -> None:
    """Stop a schedule's fires, keeping it (nothing is lost; resume restarts them)."""

    async def go(client: Client) -> None:
        await client.pause_schedule(schedule_id)

    run(ctx, go)
    click.echo(f"paused {schedule_id}")


@schedules.command()
@click.argument("schedule_id", shell_complete=complete_schedule_id)
@utc_option
@click.pass_context
def resume(ctx: click.Context, schedule_id: str) -> None:
    """Fire a paused schedule again, from its next fire time after now."""

    async def go(client: Client) -> Schedule:
        await client.resume_schedule(schedule_id)
        return await client.get_schedule(schedule_id)

    schedule = run(ctx, go)
    click.echo(f"resumed {schedule_id}: next fire {stamp(schedule.next_fire_at)}")


@schedules.command()
@click.argument("schedule_id", shell_complete=complete_schedule_id)
@click.pass_context
def remove(ctx: click.Context, schedule_id: str) -> None:
    """Delete a schedule and its timer; the executions it started stay."""

    async def go(client: Client) -> None:
        await client.remove_schedule(schedule_id)

    run(ctx, go)
    click.echo(f"removed {schedule_id}")


@schedules.command()
@click.argument("schedule_id", shell_complete=complete_schedule_id)
@click.option(
    "--idempotency-key",
    default=None,
    help="Triggering again with the same key starts nothing and prints the first id.",
)
@click.pass_context
def trigger(ctx: click.Context, schedule_id: str, idempotency_key: str | None) -> None:
    """Start the schedule's workflow now, with its input, and print the execution's id.

    A run outside the cadence: the next fire, the run count and overlap are untouched.
    """

    async def go(client: Client) -> str:
        schedule = await client.get_schedule(schedule_id)
        try:
            # The face's own start for a schedule's run: it links the execution to the
            # schedule and gives it its fire time, as a fire does.
            return await client._start(
                schedule.workflow,
                schedule.input,
                idempotency_key=idempotency_key,
                schedule_id=schedule.id,
                scheduled_at=client.clock.now_ms(),
            )
        except (ConfigurationError, PayloadError) as exc:  # refused: nothing was started
            raise BadUsage(str(exc)) from None

    click.echo(run(ctx, go))
