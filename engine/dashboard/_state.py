"""The dashboard's state: its settings, its sessions and the open face of the store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from ..aio import Client, Engine
from ._auth import Sessions
from ._config import DashboardConfig

Face = Client | Engine


class Dashboard:
    """The app's state: its settings and the open face of the store."""

    def __init__(self, source: str | os.PathLike[str] | Face, config: DashboardConfig) -> None:
        self.config = config
        self.sessions = Sessions(config)
        self._given: Face | None = source if isinstance(source, Client | Engine) else None
        self._path = None if self._given is not None else Path(source)  # type: ignore[arg-type]
        self._open: Face | None = self._given

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Opens the store's client for the app's life (not when the host gave a face)."""
        if self._path is None:
            yield
            return
        async with Client(self._path) as client:
            self._open = client
            try:
                yield
            finally:
                self._open = None

    def face(self) -> Face:
        face = self._open
        if face is None:
            raise HTTPException(
                503,
                "the dashboard's store client is not open: run the app's lifespan (a mounted "
                "dashboard needs it run by the host app's lifespan, see docs/dashboard.md)",
            )
        return face
