"""The dashboard mounted in a host's FastAPI app under a prefix: its links, cookie and
redirects stay under the prefix, and it can use a face the host keeps open."""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

import durably.aio
from durably.dashboard import create_app

from .conftest import BASE, csrf_of, read_back

Seeded = tuple[Path, dict[str, str]]


async def _drive(app: Any, failed: str) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        home = await http.get("/")
        listing = await http.get("/durably/")
        page = await http.get(f"/durably/executions/{failed}")
        done = await http.post(
            f"/durably/executions/{failed}/retry",
            data={"csrf": csrf_of(page.text), "reason": "from the host app"},
            headers={"origin": BASE},
        )
        return {"home": home, "listing": listing, "page": page, "done": done}


def test_mounted_with_the_hosts_own_face(fresh: Seeded) -> None:
    path, ids = fresh

    async def main() -> dict[str, Any]:
        async with durably.aio.Client(path) as client:
            app = FastAPI()

            @app.get("/")
            async def home() -> dict[str, str]:
                return {"shop": "open"}

            app.mount("/durably", create_app(client, operator="erin"))
            return await _drive(app, ids["failed"])

    got = asyncio.run(main())
    assert got["home"].json() == {"shop": "open"}
    links = re.findall(r'href="(/[^"]*)"', got["listing"].text)
    assert f"/durably/executions/{ids['failed']}" in links
    assert all(link.startswith("/durably/") for link in links), links
    page = got["page"]
    assert f'data-url="/durably/executions/{ids["failed"]}/live"' in page.text
    assert f'action="/durably/executions/{ids["failed"]}/retry"' in page.text
    assert "Path=/durably/" in got["listing"].headers["set-cookie"]  # the first visit
    assert got["done"].status_code == 303
    assert got["done"].headers["location"] == f"/durably/executions/{ids['failed']}?done=retry"
    execution, trail = read_back(path, ids["failed"])
    assert execution.attempt == 2
    acted = next(e for e in trail if e.kind == "operator_action")
    assert (acted.data["by"], acted.data["reason"]) == ("erin", "from the host app")


def test_mounted_by_path_opens_its_client_in_the_hosts_lifespan(seeded: Seeded) -> None:
    path, ids = seeded
    dashboard = create_app(path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        async with dashboard.router.lifespan_context(dashboard):  # a mount's is not run
            yield

    async def get(app: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            return await http.get(f"/durably/executions/{ids['fine']}")

    async def main() -> tuple[httpx.Response, httpx.Response]:
        bare = FastAPI()
        bare.mount("/durably", dashboard)
        closed = await get(bare)  # nobody ran the dashboard's lifespan
        app = FastAPI(lifespan=lifespan)
        app.mount("/durably", dashboard)
        async with lifespan(app):
            return closed, await get(app)

    closed, opened = asyncio.run(main())
    assert closed.status_code == 503 and "run the app&#39;s lifespan" in closed.text
    assert opened.status_code == 200 and 'data-step="kid"' in opened.text
