"""The ``durably`` command: inspect and steer a store from a terminal or a script.

Exit codes scripts can rely on: 0 success; 1 the command ran but reports a failure (e.g.
the execution failed); 2 bad usage or bad input (unknown option, bad JSON, bad status);
3 not found (no store at the path, unknown execution); 4 the store refused (locked by a
worker where a worker was needed, corrupt, full).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import attrs
import click
import trio

from ._cli_common import (
    EXIT_FAILED,
    BadUsage as _BadUsage,
    Failed as _Failed,
    NotFound as _NotFound,
    complete_execution_id,
    event_fields,
    run as _run,
    stamp,
    to_json as _json,
    utc_option,
    who as _who,
)
from ._cli_dashboard import dashboard
from ._cli_ops import force_fail, retry_rollback, skip_step, start
from ._cli_payload import JsonPayload
from ._cli_queues import QueueLine, queue_document, queue_lines, queue_show_labels, records
from ._cli_schedules import schedules
from ._cli_store import backup, check
from ._cli_worker import worker, workers
from .core._errors import ConfigurationError, CorruptRecordError, DurablyError, PayloadError
from .core._events import PatchMarked, decode_all
from .core._queue import MAX_PRIORITY
from .core._steps import children_of, published_of
from .core._types import Execution, Status
from .remote._client import Client
from .stores import ExecutionRecord


def _row(execution: Execution) -> str:
    created = stamp(execution.created_at)
    return f"{execution.id}  {execution.status.value:<19} {execution.workflow:<20} {created}"


@click.group()
@click.option(
    "--store",
    envvar="DURABLY_STORE",
    type=click.Path(file_okay=False),
    help="Path of the store, or a postgresql:// DSN (or set DURABLY_STORE).",
)
@utc_option
@click.version_option(package_name="durably")
@click.pass_context
def main(ctx: click.Context, store: str | None) -> None:
    """Inspect and steer durably executions in a store.

    Times are shown in the local time zone (TZ), or in UTC with --utc; --json keeps
    machine values.
    """
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


@main.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), default=None)
@click.option("--workflow", default=None, help="Only executions of this workflow.")
@click.option("--queue", default=None, help="Only executions enqueued on this queue.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--after", default=None, help="Page on: list executions after this id.")
@click.option("--patch", default=None, help="Only executions whose log took this patch.")
@click.option("--without-patch", default=None, help="Only those whose log lacks this patch.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@utc_option
@click.pass_context
def list_cmd(
    ctx: click.Context,
    status: str | None,
    workflow: str | None,
    queue: str | None,
    limit: int,
    after: str | None,
    patch: str | None,
    without_patch: str | None,
    as_json: bool,
) -> None:
    """List executions, oldest first.

    --without-patch ID with --status lists the executions still on the old code of a
    patch: once none of them is active, the patch can be deprecated.
    """

    async def go(engine: Client) -> list[Execution]:
        if patch is None and without_patch is None and queue is None:
            return await engine.list_executions(
                status=status, workflow=workflow, after=after, limit=limit
            )
        found: list[Execution] = []
        for record in records(engine.store, status=status, workflow=workflow, after=after):
            if queue is not None and record.queue != queue:
                continue
            if patch is not None or without_patch is not None:
                taken = _took_patch(engine, record.id, patch or without_patch or "")
                if taken != (patch is not None):
                    continue
            found.append(Execution.from_record(record))
            if len(found) == limit:
                break
        return found

    executions = _run(ctx, go)
    if as_json:
        click.echo(_json([attrs.asdict(e) for e in executions]))
        return
    for execution in executions:
        click.echo(_row(execution))
    if not executions:
        click.echo("no executions", err=True)


@main.command()
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@utc_option
@click.pass_context
def show(ctx: click.Context, execution_id: str, as_json: bool) -> None:
    """Show an execution: its record and its timeline."""

    async def go(engine: Client) -> tuple[Execution, ExecutionRecord | None, list[Any]]:
        execution = await engine.get_execution(execution_id)
        try:
            record = engine.store.get_execution(execution_id)
        except CorruptRecordError:
            record = None  # shown as the quarantined view get_execution gave
        events = decode_all(engine.store.read_events(execution_id), execution_id)
        return execution, record, events

    execution, record, events = _run(ctx, go)
    children, published = children_of(events), published_of(events)
    queued = queue_document(record)
    if as_json:
        timeline = [{"event": e.tag, **attrs.asdict(e, recurse=False)} for e in events]
        document = {
            "execution": attrs.asdict(execution),
            "queue": queued,
            "children": [attrs.asdict(c) for c in children],
            "published": published,
            "timeline": timeline,
        }
        click.echo(_json(document))
        return
    click.echo(_row(execution))
    for label, value in (
        ("input", execution.input),
        ("result", execution.result),
        ("error", execution.error and execution.error.get("message")),
        ("reason", execution.reason),
        ("waiting for", execution.waiting_for),
        ("wakes at", execution.wake_at and stamp(execution.wake_at)),
        ("parent", execution.parent_id),
        ("run", execution.run if execution.run > 1 else None),
        *queue_show_labels(record),
    ):
        if value not in (None, ""):
            click.echo(f"  {label}: {value}")
    if children:
        click.echo("children:")
        for child in children:
            mark = " (detached)" if child.detached else ""
            click.echo(
                f"  {child.step_id}: {child.execution_id} {child.workflow} {child.status}{mark}"
            )
    if published:
        click.echo("published:")
        for key, value in published.items():
            click.echo(f"  {key}: {json.dumps(value, default=str, sort_keys=True)}")
    click.echo("timeline:")
    for event in events:
        line = f"  {stamp(event.at, ms=True)}  {event.tag:<24} {event_fields(event)}"
        click.echo(line[:180])


@main.command()
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.argument("name")
@click.argument("payload_json", default="null", type=JsonPayload())
@click.option("--dedup-key", default=None, help="A signal with an accepted key is not resent.")
@click.option("--reason", default=None, help="Why it is sent: recorded when it is taken.")
@click.pass_context
def signal(
    ctx: click.Context,
    execution_id: str,
    name: str,
    payload_json: Any,
    dedup_key: str | None,
    reason: str | None,
) -> None:
    """Send signal NAME with a JSON payload to an execution.

    PAYLOAD_JSON is JSON text, @FILE to read it from a file, or - to read standard input.
    The wait that takes it records it as sent by cli:$USER, with --reason.
    """
    payload = payload_json

    async def go(engine: Client) -> Any:
        return await engine.signal(
            execution_id, name, payload, dedup_key=dedup_key, by=_who(), reason=reason
        )

    outcome = _run(ctx, go)
    click.echo(f"{outcome.delivery.value}{': ' + outcome.reason if outcome.reason else ''}")
    if not outcome.accepted:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("queue")
@click.argument("workflow")
@click.argument("input_json", metavar="[INPUT]", default="null", type=JsonPayload())
@click.option(
    "--priority",
    default=0,
    type=click.IntRange(-MAX_PRIORITY, MAX_PRIORITY),
    help="Lower numbers first (a queue declared with priority=True).",
)
@click.option("--dedup-id", default=None, help="Refused while a queued or running one holds it.")
@click.option("--partition", default=None, help="Its partition key (partition_concurrency).")
@click.option(
    "--delay", default=None, type=click.FloatRange(min=0), help="Seconds before it may start."
)
@click.pass_context
def enqueue(
    ctx: click.Context,
    queue: str,
    workflow: str,
    input_json: Any,
    priority: int,
    dedup_id: str | None,
    partition: str | None,
    delay: float | None,
) -> None:
    """Queue an execution of WORKFLOW on QUEUE and print its id.

    INPUT is JSON text, @FILE to read it from a file, or - to read standard input
    (default null). It stays queued until a worker that declares QUEUE admits it. A
    --dedup-id held by a queued or running execution of QUEUE exits 1, naming it.
    """
    data = input_json

    async def go(engine: Client) -> str:
        try:
            return await engine.enqueue(
                queue,
                workflow,
                data,
                priority=priority,
                dedup_id=dedup_id,
                partition=partition,
                delay=delay,
            )
        except (ConfigurationError, PayloadError) as exc:  # a bad argument: nothing queued
            raise _BadUsage(str(exc)) from None

    click.echo(_run(ctx, go))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """List queues: each one's limits, then queued (delayed), running, admissions per
    second over the last minute and the oldest admissible execution's wait.

    A queue is known once a worker that declares it has started, or once an execution
    is queued on it.
    """

    async def go(engine: Client) -> list[QueueLine]:
        return queue_lines(engine.store, engine.clock.now_ms())

    lines = _run(ctx, go)
    if as_json:
        click.echo(_json([line.to_json() for line in lines]))
        return
    width = max((len(line.name) for line in lines), default=0)
    for line in lines:
        click.echo(line.text(width))
    if not lines:
        click.echo("no queues", err=True)


@main.command()
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.option("--reason", default="cancelled from the command line")
@click.option("--wait/--no-wait", default=False, help="Wait until the worker has cancelled it.")
@click.pass_context
def cancel(ctx: click.Context, execution_id: str, reason: str, wait: bool) -> None:
    """Cancel an execution (durably requested; the worker carries it out)."""

    async def go(engine: Client) -> str:
        record = await engine.get_execution(execution_id)
        if record.status.terminal:
            return f"already {record.status.value}"
        if wait:
            await engine.cancel(execution_id, reason=reason, by=_who())
            return "cancelled"
        await engine.request_cancel(execution_id, reason=reason, by=_who())
        return "cancel requested"

    click.echo(_run(ctx, go))


@main.command()
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@click.pass_context
def retry(ctx: click.Context, execution_id: str, reason: str | None) -> None:
    """Run a failed execution again from its log (failed steps run again)."""

    async def go(engine: Client) -> str:
        await engine.operate("retry", execution_id, by=_who(), reason=reason)
        return f"retried {execution_id}"

    click.echo(_run(ctx, go))


@main.command()
@click.argument("target")
@click.option(
    "--input",
    "input_json",
    default=None,
    type=JsonPayload(),
    help="JSON input, @FILE or - for stdin (default: its defaults).",
)
@click.option("--mermaid", is_flag=True, help="Print a Mermaid flowchart instead of JSON.")
def describe(target: str, input_json: Any, mermaid: bool) -> None:
    """Describe the shape of workflow MODULE:NAME without running any step."""
    import importlib

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise _BadUsage("TARGET is MODULE:WORKFLOW, e.g. myapp.flows:onboarding")
    sys.path.insert(0, os.getcwd())
    try:
        definition = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise _NotFound(f"cannot load {target}: {exc}") from None
    data = input_json

    from .core._workflow import WorkflowDefinition
    from .runtime._describe import describe as describe_flow

    if not isinstance(definition, WorkflowDefinition):
        raise _BadUsage(f"{target} is not a workflow (decorate it with @durably.workflow)")
    try:
        shape = trio.run(describe_flow, definition, data)
    except DurablyError as exc:
        raise _Failed(str(exc)) from None
    click.echo(shape.to_mermaid() if mermaid else shape.to_json())


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Run the benchmark harness (python -m benchmarks; --quick for a smoke run)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__main__.py").exists():
        raise _NotFound(
            "the benchmark harness ships with the source tree: run `durably bench` from an "
            "editable install of a checkout (pip install -e .)"
        )
    completed = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=root, check=False)
    sys.exit(completed.returncode)


@main.command()
@click.option("--store", "demo_store", default=None, help="Where to keep the demo's store.")
@click.option("--phase-one", is_flag=True, hidden=True)
def demo(demo_store: str | None, phase_one: bool) -> None:
    """Run a real workflow on LMDB: crash it with SIGKILL, resume it, print its history."""
    from . import _demo

    if phase_one:
        assert demo_store is not None
        _demo.phase_one(demo_store)
    else:
        _demo.run_demo(demo_store)


main.add_command(check)
main.add_command(backup)
main.add_command(dashboard)
main.add_command(worker)
main.add_command(workers)
main.add_command(schedules)
for _command in (start, skip_step, force_fail, retry_rollback):
    main.add_command(_command)


def _took_patch(engine: Client, execution_id: str, patch: str) -> bool:
    """Whether the execution's log recorded patch ``patch`` (``ctx.patched``)."""
    events = decode_all(engine.store.read_events(execution_id), execution_id)
    return any(isinstance(e, PatchMarked) and e.patch == patch for e in events)
