"""What every ``durably`` command shares: the exit codes and their errors, running a call
on a client of the store, who acts, and how a time is shown to a person.

Times for people are ISO 8601 with the zone's offset: in the local zone (``TZ``) by
default, in UTC (written ``Z``) with ``--utc``, which the group and each command that
shows times accept. ``--json`` output keeps machine values (epoch milliseconds stay
integers), whatever ``--utc`` says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click
import trio
from click.shell_completion import CompletionItem

from .core._errors import (
    ConfigurationError,
    DurablyError,
    PayloadError,
    StoreError,
    StoreNotFoundError,
    UnknownExecutionError,
    UnknownScheduleError,
)
from .core._events import Event
from .core._types import from_ms
from .remote._client import Client
from .runtime._paths import is_dsn, open_store
from .stores import LmdbStore, Store

T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_STORE = 1, 2, 3, 4


class Failed(click.ClickException):
    exit_code = EXIT_FAILED


class BadUsage(click.ClickException):
    exit_code = EXIT_USAGE


class NotFound(click.ClickException):
    exit_code = EXIT_NOT_FOUND


class StoreRefused(click.ClickException):
    exit_code = EXIT_STORE


def store_path(ctx: click.Context) -> Path | str:
    """The store given (``--store`` or ``DURABLY_STORE``): a directory holding a store, or
    a PostgreSQL DSN (``postgresql://...``), given as it is to the client."""
    store = (ctx.obj or {}).get("store")
    if not store:
        raise BadUsage("no store given: pass --store PATH or set DURABLY_STORE")
    if is_dsn(store):
        return str(store)
    path = Path(store)
    if not (path / "data.mdb").exists():
        raise NotFound(f"no durably store at {path} (no data.mdb there)")
    return path


def run(
    ctx: click.Context,
    fn: Callable[[Client], Coroutine[Any, Any, T]],
    *,
    bad_input: bool = False,
) -> T:
    """Run ``fn`` against a client on the store (works beside a running worker).

    ``bad_input``: a ``ConfigurationError`` or ``PayloadError`` is the caller's argument
    refused before anything was written (exit 2), not a failure of the command.
    """
    path = store_path(ctx)

    async def main() -> T:
        async with Client(path) as client:
            return await fn(client)

    try:
        return trio.run(main)
    except (UnknownExecutionError, UnknownScheduleError, StoreNotFoundError) as exc:
        raise NotFound(str(exc)) from None
    except StoreError as exc:
        raise StoreRefused(str(exc)) from None
    except (ConfigurationError, PayloadError) as exc:
        raise (BadUsage if bad_input else Failed)(str(exc)) from None
    except DurablyError as exc:
        raise Failed(str(exc)) from None


def to_json(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=True)


def who() -> str:
    """Who an action from the command line is recorded as having been done by."""
    return f"cli:{os.environ.get('USER', 'unknown')}"


# --- times ------------------------------------------------------------------------------

_UTC_KEY = "durably.utc"


def _use_utc(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # ``meta`` is shared by the group's context and its commands'
        ctx.meta[_UTC_KEY] = True


#: ``--utc``, on the group and on every command that shows times to a person.
utc_option = click.option(
    "--utc",
    is_flag=True,
    expose_value=False,
    callback=_use_utc,
    help="Show times in UTC (default: the local time zone, from TZ).",
)


def _in_utc() -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool(ctx.meta.get(_UTC_KEY))


def stamp(at: int | datetime | None, *, ms: bool = False) -> str:
    """A time for a person: ``2026-11-25T14:44:38+01:00`` (local) or ``...13:44:38Z``.

    ``at`` is epoch milliseconds or an aware datetime; ``ms`` keeps the milliseconds.
    """
    if at is None:
        return "-"
    when = from_ms(at) if isinstance(at, int) else at
    spec = "milliseconds" if ms else "seconds"
    if _in_utc():
        return when.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")
    return when.astimezone().isoformat(timespec=spec)


#: Event fields that hold epoch milliseconds (besides ``at``); ``tests/test_cli_times.py``
#: checks that every such field of every event is here.
TIME_FIELDS = frozenset({"wake_at", "retry_at", "scheduled_at", "deadline"})
#: Fields a timeline line leaves out: measurements, not what happened.
_QUIET = frozenset({"at", "duration_ms"})


def event_fields(event: Event, *, leave_out: frozenset[str] = _QUIET) -> str:
    """An event's fields as ``name=value, ...``, its times shown as ``stamp`` shows them."""
    parts = []
    for key, value in attrs.asdict(event, recurse=False).items():
        if key in leave_out or value in (None, {}, ""):
            continue
        if key in TIME_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={stamp(value, ms=True)}")
        else:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


# --- shell completion of ids ------------------------------------------------------------

#: At most this many ids are offered for one completion.
_OFFERED = 50


def _read_store(ctx: click.Context) -> Store | None:
    """The store a completion reads (read-only, beside a worker), or ``None``."""
    store = ctx.find_root().params.get("store") or os.environ.get("DURABLY_STORE")
    if not store or not (is_dsn(store) or (Path(store) / "data.mdb").exists()):
        return None
    try:
        if is_dsn(store):
            return open_store(store, face="Client", lock=False, create=False)
        return LmdbStore(store, readonly=True)
    except Exception:  # a completion offers nothing rather than a traceback in the shell
        return None


def complete_execution_id(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Execution ids of the store that begin with what was typed (ids sort by time)."""
    store = _read_store(ctx)
    if store is None:
        return []
    try:
        # Every id that begins with ``incomplete`` sorts after it (or is it).
        exact = incomplete and store.get_execution(incomplete) is not None
        found = [incomplete] if exact else []
        found += [r.id for r in store.list_executions(after=incomplete or None, limit=_OFFERED)]
    except Exception:  # a completion offers nothing rather than a traceback in the shell
        return []
    finally:
        store.close()
    return [CompletionItem(eid) for eid in found if eid.startswith(incomplete)][:_OFFERED]


def complete_schedule_id(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Schedule ids of the store that begin with what was typed."""
    store = _read_store(ctx)
    if store is None:
        return []
    try:
        ids = [sid for sid, _ in store.list_schedules() if sid.startswith(incomplete)]
    except Exception:  # a completion offers nothing rather than a traceback in the shell
        return []
    finally:
        store.close()
    return [CompletionItem(sid) for sid in ids[:_OFFERED]]
