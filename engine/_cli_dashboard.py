"""``durably dashboard``: serve the web dashboard (``durably.dashboard``) with uvicorn.

Exit codes, as for every ``durably`` command: 2 bad usage (no store given, the
``dashboard`` extra missing, a non-loopback ``--host`` without a token, a short token,
a bad ``--stuck-after``); 3 no store at the path; 4 the store refused at start.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from pathlib import Path
from typing import Any

import click

from .core._errors import ConfigurationError
from .runtime._paths import is_dsn

_LEVELS = ("debug", "info", "warning", "error")


class _NotFound(click.ClickException):
    exit_code = 3


class _StoreRefused(click.ClickException):
    exit_code = 4


@click.command()
@click.option(
    "--store",
    "store_opt",
    default=None,
    type=click.Path(file_okay=False),
    help="Path of the store (or durably --store PATH, or DURABLY_STORE).",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port; the URL is printed).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; one beyond loopback needs a token.",
)
@click.option(
    "--token",
    envvar="DURABLY_DASHBOARD_TOKEN",
    default=None,
    help="Require a login with this token (or set DURABLY_DASHBOARD_TOKEN, which ps cannot show).",
)
@click.option(
    "--operator",
    default=None,
    help="Who actions are recorded as without a login (default dashboard:$USER); with one, "
    "the name the login form suggests.",
)
@click.option(
    "--stuck-after",
    default="1h",
    show_default=True,
    help="Needs attention: unchanged this long is stuck (90s, 15m, 2h, 1d).",
)
@click.option("--utc", is_flag=True, help="Show times in UTC (default: this machine's zone).")
@click.option(
    "--root-path",
    default="",
    help="The path prefix a reverse proxy serves it under (the proxy strips it).",
)
@click.option("--log-level", type=click.Choice(_LEVELS), default="info", show_default=True)
@click.pass_context
def dashboard(
    ctx: click.Context,
    store_opt: str | None,
    port: int,
    host: str,
    token: str | None,
    operator: str | None,
    stuck_after: str,
    utc: bool,
    root_path: str,
    log_level: str,
) -> None:
    """Serve the web dashboard of a store: executions, what needs attention, schedules,
    queues, and the operator's actions, recorded with who did them.

    It is a client of the store: it runs beside the store's worker, which carries out
    the actions. It listens on 127.0.0.1 unless told otherwise; any other address needs
    --token (or DURABLY_DASHBOARD_TOKEN), and then a login asks for it and a name.
    """
    store = store_opt or (ctx.obj or {}).get("store")
    if not store:
        raise click.UsageError("no store given: pass --store PATH or set DURABLY_STORE")
    path: Path | str = store if is_dsn(store) else Path(store)
    if isinstance(path, Path) and not (path / "data.mdb").exists():
        raise _NotFound(f"no durably store at {path} (no data.mdb there)")
    missing = [m for m in ("starlette", "jinja2", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.UsageError(
            f"durably dashboard needs {', '.join(missing)}: pip install 'durably[dashboard]'"
        )
    from .dashboard import create_app
    from .dashboard._config import LOOPBACK_NAMES, is_loopback, parse_duration

    loopback = is_loopback(host)
    if not loopback and not token:
        raise click.UsageError(
            f"refusing to serve the dashboard on {host} without a token: anyone who reaches "
            "it could act on the store. Pass --token TOKEN (or set DURABLY_DASHBOARD_TOKEN), "
            "or keep the default --host 127.0.0.1"
        )
    try:
        app = create_app(
            path,
            token=token or None,
            operator=operator,
            utc=utc,
            stuck_after=parse_duration(stuck_after),
            # On loopback without a token, answer only to loopback names: a page of
            # another site that rebinds its DNS name to 127.0.0.1 is refused.
            allowed_hosts=LOOPBACK_NAMES if loopback and not token else None,
        )
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(app, host, port, root_path, log_level, path))


async def _serve(
    app: Any, host: str, port: int, root_path: str, log_level: str, store: Path | str
) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        root_path=root_path,
        lifespan="on",
        log_level="warning" if log_level == "info" else log_level,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise _StoreRefused(f"the dashboard did not start on the store at {store}")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    behind = f"; its links are under {root_path}/, for a proxy that strips it" if root_path else ""
    click.echo(f"durably dashboard: http://{shown}:{bound[1]}/ (store {store}{behind})")
    await serving
