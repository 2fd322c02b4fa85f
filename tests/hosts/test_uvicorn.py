"""durably.aio inside a real FastAPI service under uvicorn, killed and restarted; and
durably.sync.Client driving it from many threads of another process."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import durably
import durably.sync

from .shop_workflows import order

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow


class Ledger:
    """A small HTTP server the steps post their lines to (a real asyncio HTTP call)."""

    def __init__(self) -> None:
        lines: list[str] = []
        self.lines = lines

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers["Content-Length"])
                lines.append(self.rfile.read(size).decode())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """uvicorn serving tests/hosts/shop_app.py in a subprocess."""

    def __init__(self, store: Path, ledger: Ledger) -> None:
        self.env = {**os.environ, "SHOP_STORE": str(store), "SHOP_LEDGER": ledger.url}
        self.ledger = ledger
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(HERE),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "shop_app:app",
            ],
            env=self.env,
        )
        _until(lambda: self._up(), 30, "uvicorn did not start serving")

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"uvicorn exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/orders/0", timeout=1).status_code == 404
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def _until(check: Callable[[], bool], seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    ledger = Ledger()
    srv = Server(tmp_path / "shop.durably", ledger)
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.kill()
        ledger.server.shutdown()


def test_orders_survive_a_sigkill_of_the_server(server: Server) -> None:
    http = httpx.Client(base_url=server.url, timeout=10)
    ids = {n: http.post("/orders", json={"id": n}).json()["execution_id"] for n in range(20)}
    assert len(set(ids.values())) == 20
    for n in range(10):
        assert http.post(f"/orders/{ids[n]}/approve").status_code == 200
    server.kill()  # while approved orders ship: some steps are in flight
    server.start()
    http = httpx.Client(base_url=server.url, timeout=10)
    # A client retrying its POSTs gets the same executions (idempotency keys).
    again = {n: http.post("/orders", json={"id": n}).json()["execution_id"] for n in range(20)}
    assert again == ids
    for n in range(10, 20):
        http.post(f"/orders/{ids[n]}/approve")

    def all_shipped() -> bool:
        return all(http.get(f"/orders/{ids[n]}").json()["status"] == "completed" for n in ids)

    _until(all_shipped, 30, "not every order completed after the restart")
    assert [http.get(f"/orders/{ids[n]}").json()["result"] for n in range(20)] == [
        f"shipped {n}" for n in range(20)
    ]
    # SIGTERM: uvicorn shuts down, then re-raises the signal (its exit status is -15).
    assert server.stop() in (0, -signal.SIGTERM)
    assert server.ledger.lines[-1] == "- engine closed"
    shipped = {line.split()[0] for line in server.ledger.lines if " ship " in line}
    assert shipped == {f"{ids[n]}:ship" for n in range(20)}  # each order shipped, once per key


def test_a_sync_client_drives_the_service_from_many_threads(server: Server) -> None:
    store = server.env["SHOP_STORE"]
    with durably.sync.Client(store, workflows=[order]) as client:

        def one(n: int) -> Any:
            eid = client.start(order, {"id": f"t{n}"}, idempotency_key=f"t{n}")
            _until(
                lambda: client.get_execution(eid).waiting_for == "approve",
                20,
                f"order t{n} never waited for its approval",
            )
            client.signal(eid, "approve", None)
            return client.wait(eid, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(16)))
        assert results == [f"shipped t{n}" for n in range(16)]
        assert len(client.list_executions(limit=100)) == 16
    with pytest.raises(durably.ConfigurationError, match="not open"):
        client.start(order, {"id": "late"})
