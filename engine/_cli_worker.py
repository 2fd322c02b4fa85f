"""``durably worker MODULE:ATTR``: run a store's worker as a service (``_worker.py``).

Exit codes, as for every ``durably`` command: 0 stopped by a signal after its drain; 1
the user's module or options function raised; 2 bad usage (no store given, a
``MODULE:ATTR`` that does not name workflows or options, an option ``durably.Engine``
refuses, a health or metrics port it cannot listen on); 4 the store refused (held by another
worker, corrupt); 128 + the signal's number when a second signal stopped it at once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import NoReturn

import click

from ._cli_common import run, stamp, to_json
from ._worker import (
    EXIT_FAILED,
    EXIT_USAGE,
    WorkerConfig,
    WorkerLoadError,
    WorkerUsageError,
    exit_code_of,
    load_options,
    run_worker,
)
from ._worker_group import run_group
from ._worker_log import configure
from .core._errors import DurablyError
from .core._records import LeaseInfo
from .core._shards import SHARDS, workers_of
from .remote._client import Client
from .runtime._paths import is_dsn

_LEVELS = ("debug", "info", "warning", "error")

log = logging.getLogger("durably.worker")


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--store",
    "store_opt",
    default=None,
    type=click.Path(file_okay=False),
    help="Path of the store, or a postgresql:// DSN (or durably --store, or DURABLY_STORE); "
    "made if missing.",
)
@click.option(
    "--grace",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds running step bodies get to finish after SIGTERM or SIGINT.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Plain lines, or one JSON object a line.",
)
@click.option("--log-level", type=click.Choice(_LEVELS), default="info", show_default=True)
@click.option(
    "--health",
    "health_port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Serve GET /healthz and /readyz on this port (0: any free port, logged).",
)
@click.option(
    "--health-host", default="127.0.0.1", show_default=True, help="Where --health listens."
)
@click.option(
    "--metrics",
    "metrics_port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics at /metrics on this port (0: any free port, logged).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Where --metrics listens."
)
@click.option(
    "--many-workers",
    is_flag=True,
    default=None,
    help="Be one of many workers of the store (every worker of it must say so); see "
    "docs/deployment.md.",
)
@click.option(
    "--lease-seconds",
    default=None,
    type=click.FloatRange(min=0.1, max=3600),
    help="With --many-workers: after how long the others take a silent worker's "
    "executions over [default: 5].",
)
@click.option(
    "--processes",
    default=None,
    type=click.IntRange(min=0),
    help="Run this many workers of many (implies --many-workers; 0: one per core) under "
    "this process, which restarts a worker that dies.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    target: str,
    store_opt: str | None,
    grace: float,
    log_format: str,
    log_level: str,
    health_port: int | None,
    health_host: str,
    metrics_port: int | None,
    metrics_host: str,
    many_workers: bool | None,
    lease_seconds: float | None,
    processes: int | None,
) -> None:
    """Run the worker of a store for the workflows MODULE:ATTR names.

    ATTR is a list of @durably.workflow definitions, or a function returning a dict of
    durably.Engine options (workflows=, queues=, max_live_executions=, ...). SIGTERM or
    SIGINT drains: no new work is taken, running step bodies get --grace seconds to
    finish, the rest is parked in the store, exit 0. A second signal stops at once.
    """
    store = store_opt or (ctx.obj or {}).get("store")
    if not store:
        _fail("no store given: pass --store PATH or set DURABLY_STORE", EXIT_USAGE)
    try:
        options = load_options(target)
    except WorkerUsageError as exc:
        _fail(str(exc), EXIT_USAGE)
    except WorkerLoadError as exc:
        cause = exc.__cause__
        if cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        _fail(str(exc), EXIT_FAILED)
    if many_workers or processes is not None:
        options["many_workers"] = True
    if lease_seconds is not None:
        if not options.get("many_workers"):
            _fail("--lease-seconds is for a worker of many: add --many-workers", EXIT_USAGE)
        options["lease_seconds"] = lease_seconds
    if health_port is not None and importlib.util.find_spec("hypercorn") is None:
        _fail("--health needs hypercorn: pip install 'durably[worker]'", EXIT_USAGE)
    configure("json" if log_format == "json" else "text", log_level)
    count = (os.cpu_count() or 1) if processes == 0 else processes
    if count is not None and count > 1:
        if health_port or metrics_port:
            _fail(
                "--processes runs several workers: --health and --metrics take 0 there "
                "(each worker listens on a free port of its own, logged)",
                EXIT_USAGE,
            )
        argv = [sys.executable, "-m", "durably", "worker", target, "--store", str(store)]
        argv += ["--grace", str(grace), "--log-format", log_format, "--log-level", log_level]
        argv += ["--many-workers", "--lease-seconds", str(options.get("lease_seconds", 5.0))]
        if health_port is not None:
            argv += ["--health", "0", "--health-host", health_host]
        if metrics_port is not None:
            argv += ["--metrics", "0", "--metrics-host", metrics_host]
        log.info("a group of %d workers of many on %s", count, store)
        sys.exit(run_group(argv, count, grace))
    health = None if health_port is None else (health_host, health_port)
    metrics = None if metrics_port is None else (metrics_host, metrics_port)
    where = store if is_dsn(store) else Path(store)
    config = WorkerConfig(where, options, target, grace=grace, health=health, metrics=metrics)
    try:
        code = run_worker(config)
    except DurablyError as exc:  # in the log's own format from here on
        log.error("%s", exc)
        sys.exit(exit_code_of(exc))
    except Exception:
        log.exception("the worker stopped on an error")
        sys.exit(EXIT_FAILED)
    sys.exit(code)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """List the workers of many that serve the store: each one's shards and when its
    leases run out (an expired worker's shards are taken over by the others).

    A store served by one worker (without --many-workers) has none to list.
    """

    async def go(client: Client) -> list[LeaseInfo]:
        return client.store.leases()

    views, free = workers_of(run(ctx, go))
    now = int(time.time() * 1000)
    if as_json:
        document = [
            {
                "worker": view.worker,
                "shards": list(view.shards),
                "expires": stamp(view.expires_ms),
                "live": view.live(now),
            }
            for view in views
        ]
        click.echo(to_json({"workers": document, "free_shards": free}))
        return
    for view in views:
        state = "live" if view.live(now) else "EXPIRED (being taken over)"
        click.echo(
            f"{view.worker}  {len(view.shards)} shards  leases until "
            f"{stamp(view.expires_ms)}  {state}"
        )
    if not views:
        click.echo("no workers of many hold this store's shards", err=True)
    elif free:
        click.echo(f"{free} of {SHARDS} shards free (claimed at the next beat)")
