"""``durably start`` and the operator's repairs: ``skip-step``, ``force-fail`` and
``retry-rollback``.

Each runs through a client of the store, so it works beside a running worker and with
none. ``start`` only writes the start: it is durable when the command prints the id,
and a worker that registers the workflow runs it (now, or when it starts). The repairs
are the operator's actions (``docs/audit-and-operator.md``), carried out by the store's
worker when one runs and here, holding the worker lock, when none does; the audit trail
records each with ``by`` set to ``cli:$USER`` and the reason given, as ``retry`` does.

``--reason`` is required where the action replaces what the code would have done
(``force-fail``: the reason is the execution's error; ``skip-step``: the step's result
is made up by hand), and optional for ``retry-rollback``, which only runs the
workflow's own compensations again (as ``retry`` runs its steps again).
"""

from __future__ import annotations

from typing import Any

import click

from ._cli_common import BadUsage, complete_execution_id, run, to_json, who
from ._cli_payload import JsonPayload
from .core._errors import ConfigurationError, PayloadError
from .remote._client import Client

_REASON = "Why (kept in the audit trail with who did it)."


@click.command()
@click.argument("workflow")
@click.argument("input_json", metavar="[INPUT]", default="null", type=JsonPayload())
@click.option(
    "--idempotency-key",
    default=None,
    help="Starting again with the same key starts nothing and prints the first id.",
)
@click.option(
    "--wait/--no-wait",
    default=False,
    help="Wait for the outcome; print the result as JSON (exit 1 if it failed).",
)
@click.option(
    "--timeout",
    default=None,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="With --wait: give up after SECONDS (exit 1; the execution goes on).",
)
@click.pass_context
def start(
    ctx: click.Context,
    workflow: str,
    input_json: Any,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Start an execution of WORKFLOW and print its id once the start is durable.

    INPUT is JSON text, @FILE to read it from a file, or - to read standard input
    (default null). No worker needs to run: the execution is pending until one that
    registers WORKFLOW runs it. With --wait, the id goes to standard error and the
    result, as JSON, to standard output.
    """
    if timeout is not None and not wait:
        raise BadUsage("--timeout goes with --wait: it bounds the wait for the outcome")
    data = input_json

    async def go(client: Client) -> str:
        try:
            eid = await client.start(workflow, data, idempotency_key=idempotency_key)
        except (ConfigurationError, PayloadError) as exc:  # refused: nothing was started
            raise BadUsage(str(exc)) from None
        if not wait:
            return eid
        click.echo(f"started {eid}", err=True)
        # A failed or cancelled execution raises: exit 1 with its error.
        return to_json(await client.wait(eid, timeout=timeout))

    click.echo(run(ctx, go))


@click.command("skip-step")
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.argument("step_id")
@click.argument("result_json", metavar="[RESULT]", default="null", type=JsonPayload())
@click.option("--reason", required=True, help=_REASON)
@click.pass_context
def skip_step(
    ctx: click.Context, execution_id: str, step_id: str, result_json: Any, reason: str
) -> None:
    """Give a failed or retrying step RESULT instead of running it, and go on.

    RESULT is JSON text, @FILE or - for standard input (default null): the workflow
    sees it as the step's return value. The execution must be failed (at that step) or
    retrying it; a failed execution resumes, as with retry.
    """
    result = result_json

    async def act(client: Client) -> None:
        await client.operate(
            "skip_step", execution_id, step_id=step_id, result=result, by=who(), reason=reason
        )

    run(ctx, act, bad_input=True)
    click.echo(f"skipped step {step_id} of {execution_id}")


@click.command("force-fail")
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.option("--reason", required=True, help="Why: recorded as the execution's error.")
@click.pass_context
def force_fail(ctx: click.Context, execution_id: str, reason: str) -> None:
    """Mark an unfinished (or compensation-failed) execution failed with REASON.

    A running step is interrupted. `durably retry` can run it again later.
    """

    async def act(client: Client) -> None:
        await client.operate("force_fail", execution_id, by=who(), reason=reason)

    run(ctx, act, bad_input=True)
    click.echo(f"force-failed {execution_id}")


@click.command("retry-rollback")
@click.argument("execution_id", shell_complete=complete_execution_id)
@click.option("--reason", default=None, help=_REASON)
@click.pass_context
def retry_rollback(ctx: click.Context, execution_id: str, reason: str | None) -> None:
    """Run the rollback of a compensation-failed execution again.

    Compensations that completed do not run again; the one that failed, and those
    after it, do.
    """

    async def act(client: Client) -> None:
        await client.operate("retry_rollback", execution_id, by=who(), reason=reason)

    run(ctx, act)
    click.echo(f"retried the rollback of {execution_id}")
