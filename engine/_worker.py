"""``durably worker``: one store's worker as a service, stopped by a signal.

What it runs comes from ``MODULE:ATTR`` (``load_options``): a list of workflow
definitions, one definition, a dict of ``durably.Engine`` keyword arguments, or a callable
returning such a dict. The store comes from the command line, never from the options.

Its life (``run_worker``): start the health endpoints (if asked), open the engine (its
recovery runs), report ready, wait for ``SIGTERM`` or ``SIGINT``, then ``engine.drain``
for at most the grace, and leave the engine, which parks the rest and writes what the
commit actor holds; exit 0. A second signal stops at once: the drain is cancelled and the
engine left at once (running step bodies are cancelled; they run again at the next
start); should that take longer than ``FORCE_SECONDS`` (a body in a thread that cannot be
cancelled), or a third signal come, the process ends with ``os._exit``. Nothing
acknowledged is lost either way: acknowledged means committed, on disk already.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from ._engine import Engine
from ._worker_health import WorkerState, serve_health, sole
from .core._errors import ConfigurationError, DurablyError, StoreError, StorePathError
from .core._workflow import WorkflowDefinition

log = logging.getLogger("durably.worker")

EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 1, 2, 4
#: After a second signal, how long leaving the engine may take before ``os._exit``.
FORCE_SECONDS = 3.0

_GIVE = (
    "give MODULE:ATTR where ATTR is a list of @durably.workflow definitions, or a "
    "function returning a dict of durably.Engine options (workflows=, queues=, ...)"
)


class WorkerUsageError(DurablyError):
    """What ``durably worker`` was given cannot be run: the message says what to give."""


class WorkerLoadError(DurablyError):
    """Importing ``MODULE`` or calling the options function raised (the user's code)."""


@attrs.frozen
class WorkerConfig:
    store: Path | str  # a directory, or a PostgreSQL DSN
    options: dict[str, Any]
    target: str
    grace: float = 30.0
    health: tuple[str, int] | None = None
    #: Where ``--metrics`` serves Prometheus' scrape (``durably.telemetry``), if asked.
    metrics: tuple[str, int] | None = None


# --- what to run ---


def load_target(target: str) -> Any:
    """The object ``MODULE:ATTR`` names (``ATTR`` may be dotted); the current directory
    is on the import path, as for ``python -m``."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise WorkerUsageError(f"{target!r} is not MODULE:ATTR; {_GIVE}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise WorkerUsageError(
                f"no module named {exc.name!r} (from {target!r}): run the worker from the "
                "directory that holds it, or put that directory on PYTHONPATH"
            ) from None
        raise WorkerLoadError(f"importing {module_name!r} failed: {exc!r}") from exc
    except Exception as exc:
        raise WorkerLoadError(f"importing {module_name!r} failed: {exc!r}") from exc
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise WorkerUsageError(f"{module_name!r} has no attribute {attr!r}; {_GIVE}") from None
    return found


def load_options(target: str) -> dict[str, Any]:
    """The ``durably.Engine`` keyword arguments ``MODULE:ATTR`` stands for, checked."""
    found = load_target(target)
    if isinstance(found, WorkflowDefinition):
        return {"workflows": [found]}
    if isinstance(found, Mapping):
        options = dict(found)
    elif callable(found):
        if not _takes_no_arguments(found):
            raise WorkerUsageError(f"{target} takes arguments; {_GIVE} (of no arguments)")
        try:
            made = found()
        except Exception as exc:
            raise WorkerLoadError(f"calling {target} failed: {exc!r}") from exc
        if isinstance(made, WorkflowDefinition):
            made = [made]
        if isinstance(made, Mapping):
            options = dict(made)
        elif _workflow_list(made):
            options = {"workflows": made}
        else:
            raise WorkerUsageError(
                f"{target}() returned {_kind(made)}, not a dict of durably.Engine options; {_GIVE}"
            )
    elif _workflow_list(found):
        options = {"workflows": found}
    else:
        raise WorkerUsageError(f"{target} is {_kind(found)}; {_GIVE}")
    return _checked(options, target)


def _takes_no_arguments(fn: Any) -> bool:
    try:
        inspect.signature(fn).bind()
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let the call say
        return True
    return True


def _workflow_list(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def _kind(value: Any) -> str:
    return f"a {type(value).__name__} ({value!r:.60})"


def _checked(options: dict[str, Any], target: str) -> dict[str, Any]:
    accepted = [
        name
        for name, p in inspect.signature(Engine.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    for name in options:
        if name == "store":
            raise WorkerUsageError(
                f"the options of {target} give a store; the worker's store comes from "
                "--store or DURABLY_STORE: remove it from the options"
            )
        if name not in accepted:
            raise WorkerUsageError(
                f"the options of {target} name {name!r}, which durably.Engine does not "
                f"take; it takes {', '.join(accepted)}"
            )
    workflows = list(options.get("workflows", ()))
    for item in workflows:
        if not isinstance(item, WorkflowDefinition):
            raise WorkerUsageError(
                f"{target}: {_kind(item)} is not a workflow (decorate it with @durably.workflow)"
            )
    if not workflows:
        raise WorkerUsageError(f"{target} names no workflow: a worker with none runs nothing")
    return {**options, "workflows": workflows}


# --- running ---


class _Signals:
    """Counts SIGTERM and SIGINT: the first asks for the drain, the second stops at once,
    the third ends the process."""

    def __init__(self) -> None:
        self.first = trio.Event()
        self.stop_now = trio.CancelScope()
        self.forced: int | None = None

    async def watch(self, receiver: Any) -> None:
        async for signum in receiver:
            name = signal.Signals(signum).name
            if not self.first.is_set():
                log.info("%s: draining", name)
                self.first.set()
            elif self.forced is None:
                self.forced = 128 + signum
                log.warning(
                    "%s again: stopping at once; running step bodies are cancelled (the "
                    "process ends in %s s if that takes longer, or at a third signal)",
                    name,
                    FORCE_SECONDS,
                )
                self.stop_now.cancel()
                # Not through logging: a blocked log write could hold its lock.
                timer = threading.Timer(FORCE_SECONDS, os._exit, (self.forced,))
                timer.daemon = True
                timer.start()
            else:
                log.warning("%s a third time: the process ends now", name)
                os._exit(self.forced)


def run_worker(config: WorkerConfig) -> int:
    """Run until a signal stops it; the exit code (0 after a drain, 128 + the signal's
    number after a stop at once)."""
    return trio.run(_main, config)


async def _main(config: WorkerConfig) -> int:
    state = WorkerState()
    signals = _Signals()
    try:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as receiver:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(signals.watch, receiver)
                if config.health is not None:
                    url = await nursery.start(serve_health, state, *config.health)
                    log.info("health endpoints on %s/healthz and %s/readyz", url, url)
                with signals.stop_now:
                    await _serve(config, state, signals)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the one error that stopped it, plainly
        raise sole(group) from None
    if signals.forced is not None:
        log.info("worker stopped at once")
        return signals.forced
    log.info("worker stopped: what had not finished is parked in the store")
    return 0


async def _serve(config: WorkerConfig, state: WorkerState, signals: _Signals) -> None:
    names = [wf.name for wf in config.options["workflows"]]
    log.info(
        "worker starting on %s (pid %d): %s, workflows %s",
        config.store,
        os.getpid(),
        config.target,
        names,
    )
    options = dict(config.options)
    endpoint = None
    if config.metrics is not None:
        if options.get("telemetry"):
            raise ConfigurationError(
                "--metrics records through its own telemetry; drop the telemetry= option "
                "the worker's options give, or --metrics"
            )
        from .telemetry import serve_prometheus

        endpoint = serve_prometheus(config.metrics[1], config.metrics[0])
        options["telemetry"] = endpoint.telemetry
        log.info("metrics on %s", endpoint.url)
    try:
        await _run_engine(config, options, state, signals)
    finally:
        if endpoint is not None:
            endpoint.close()


async def _run_engine(
    config: WorkerConfig, options: dict[str, Any], state: WorkerState, signals: _Signals
) -> None:
    async with Engine(config.store, **options) as engine:
        state.engine = engine
        _log_recovery(engine)
        state.phase = "ready"
        log.info("worker ready")
        await signals.first.wait()
        state.phase = "draining"
        live = engine.statistics().live
        log.info("draining: no new work; %d live executions, grace %s s", live, config.grace)
        if await engine.drain(config.grace):
            log.info("drained: no step body runs")
        else:
            log.warning(
                "the grace of %s s ran out: step bodies still running are cancelled and run "
                "again at the next start",
                config.grace,
            )
        state.phase = "stopping"


def _log_recovery(engine: Engine) -> None:
    report = engine.last_recovery
    assert report is not None
    log.info(
        "recovered: %d resumed, %d parked, %d woken, %d queued, %d timers armed",
        report.resumed,
        report.parked,
        report.woken,
        report.queued,
        report.timers,
    )
    if report.unknown_workflows:
        log.warning(
            "the store holds executions of workflows this worker does not register, left "
            "as they are: %s",
            ", ".join(report.unknown_workflows),
        )
    for eid in report.quarantined:
        log.error("execution %s was quarantined at start", eid, extra={"execution_id": eid})


def exit_code_of(error: DurablyError) -> int:
    """The exit code of an error that stopped the worker before it ran."""
    if isinstance(error, StorePathError | ConfigurationError | WorkerUsageError):
        return EXIT_USAGE
    if isinstance(error, StoreError):
        return EXIT_STORE
    return EXIT_FAILED
