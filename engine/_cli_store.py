"""``durably check`` and ``durably backup``: the store's files, beside a running worker.

Both open the store read-only, in their own process (LMDB opens an environment once per
process, so never from the worker's), and read it in one read transaction: the worker
goes on writing, and what they read is one consistent snapshot.

Exit codes, as for every ``durably`` command: 0 clean; 1 damage found (``check``, or a
backup whose copy fails its check); 2 bad usage; 3 no store at the path; 4 the store
refused (damaged as a whole, or the copy failed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .core._errors import StoreError
from .runtime._paths import is_dsn
from .stores._lmdb import LmdbStore
from .stores._verify import verify_store

_EXIT_DAMAGED, _EXIT_USAGE, _EXIT_NOT_FOUND, _EXIT_STORE = 1, 2, 3, 4

_STORE = click.option(
    "--store",
    "store_opt",
    default=None,
    type=click.Path(file_okay=False),
    help="Path of the store (or durably --store PATH, or DURABLY_STORE).",
)


def _path(ctx: click.Context, store_opt: str | None) -> Path:
    store = store_opt or (ctx.obj or {}).get("store")
    if not store:
        click.echo("no store given: pass --store PATH or set DURABLY_STORE", err=True)
        sys.exit(_EXIT_USAGE)
    if is_dsn(store):
        click.echo(
            "durably check and durably backup read an LMDB store's files; for a PostgreSQL "
            "store use the server's own tools (pg_dump, base backups, amcheck)",
            err=True,
        )
        sys.exit(_EXIT_USAGE)
    path = Path(store)
    if not (path / "data.mdb").exists():
        click.echo(f"no durably store at {path} (no data.mdb there)", err=True)
        sys.exit(_EXIT_NOT_FOUND)
    return path


@click.command()
@_STORE
@click.pass_context
def check(ctx: click.Context, store_opt: str | None) -> None:
    """Read the whole store and report damage (exit 1 if any, 0 if clean).

    Every record, log, key and index is read and checked: checksums, key shapes, and
    that the indexes agree with the records. Safe while a worker runs.
    """
    report = verify_store(_path(ctx, store_opt))
    for line in report.lines():
        click.echo(line)
    sys.exit(_EXIT_DAMAGED if report.damaged else 0)


@click.command()
@_STORE
@click.argument("destination", type=click.Path(file_okay=False))
@click.option(
    "--check/--no-check",
    "verify",
    default=True,
    show_default=True,
    help="Check the copy as `durably check` does (exit 1 if it is damaged).",
)
@click.pass_context
def backup(ctx: click.Context, store_opt: str | None, destination: str, verify: bool) -> None:
    """Copy the store into DESTINATION (a new or empty directory), compacted.

    A consistent snapshot, taken while the worker runs; restore it by putting its
    data.mdb in place of the store's, with no worker running (docs/operations.md).
    """
    path = _path(ctx, store_opt)
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        click.echo(f"the destination {target} is not empty: give a new directory", err=True)
        sys.exit(_EXIT_USAGE)
    try:
        store = LmdbStore(path, readonly=True)
        try:
            target = store.backup(destination)
        finally:
            store.close()
    except StoreError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(_EXIT_STORE)
    click.echo(f"backed up {path} into {target}")
    if verify:
        report = verify_store(target)
        for line in report.lines():
            click.echo(line)
        if report.damaged:
            sys.exit(_EXIT_DAMAGED)
