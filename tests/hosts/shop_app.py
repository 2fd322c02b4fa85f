"""A FastAPI service that embeds a durably worker with ``durably.aio`` (uvicorn serves it
in the host tests). The store path comes from ``SHOP_STORE``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from shop_workflows import append_to_ledger, order  # uvicorn --app-dir puts this folder on the path

import durably
import durably.aio

engine = durably.aio.Engine(os.environ["SHOP_STORE"], workflows=[order], poll_interval=0.2)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine:
        yield
    # Reached only once the engine has closed: every acknowledged write is in the store.
    await append_to_ledger("- engine closed")


app = FastAPI(lifespan=lifespan)


@app.post("/orders")
async def place(body: dict[str, Any]) -> dict[str, str]:
    eid = await engine.start(order, body, idempotency_key=str(body["id"]))
    return {"execution_id": eid}


@app.post("/orders/{execution_id}/approve")
async def approve(execution_id: str) -> dict[str, str]:
    receipt = await engine.signal(execution_id, "approve", None)
    return {"delivery": receipt.delivery.value}


@app.get("/orders/{execution_id}")
async def show(execution_id: str) -> dict[str, Any]:
    try:
        execution = await engine.get_execution(execution_id)
    except durably.UnknownExecutionError:
        raise HTTPException(404, "no such order") from None
    return {"status": execution.status.value, "result": execution.result}
