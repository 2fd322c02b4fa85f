"""Fixtures of the dashboard tests: a seeded store, the app over it, and its HTTP client."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

import durably

from . import flows

T = TypeVar("T")
BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store the read-only tests share: one execution in each state the pages show."""
    root = tmp_path_factory.mktemp("dashboard")
    return root / "store", flows.seed(root / "store", root / "flag")


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A store of the same executions for a test that changes it."""
    return tmp_path / "store", flows.seed(tmp_path / "store", tmp_path / "flag")


def serve(app: Any, scenario: Callable[[httpx.AsyncClient], Awaitable[T]], **kwargs: Any) -> T:
    """Run ``scenario`` against ``app`` (its lifespan included) over httpx's ASGI transport."""

    async def main() -> T:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE, **kwargs) as http:
                return await scenario(http)

    return asyncio.run(main())


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def listed_ids(html: str, table: str = "executions-table") -> list[str]:
    """The execution ids of one table of a page, in order."""
    start = html.index(f'id="{table}"')
    end = html.index("</table>", start)
    return re.findall(r'<tr data-id="([0-9a-f]+)"', html[start:end])


def read_back(path: Path, execution_id: str) -> tuple[durably.Execution, list[durably.AuditEntry]]:
    """The execution and its audit trail, read by a client of the store."""

    async def main() -> tuple[durably.Execution, list[durably.AuditEntry]]:
        async with durably.Client(path) as client:
            return await client.get_execution(execution_id), await client.audit(execution_id)

    return trio.run(main)
