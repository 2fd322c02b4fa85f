"""``durably.Client``: start, signal, cancel, wait and read, in a process beside the
store's one worker (a web server, a script, the command line).

A client executes nothing. Its writes are durable at once (the same ``Gateway`` calls as
the engine's), each with an inbox entry in the same transaction: the worker acts on it
within milliseconds when the hint that follows arrives, within ``poll_interval`` when it
is lost, and at its next start when it was not running.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import trio

from durably.stores import ExecutionRecord, Store

from ..core._audit import AuditEntry, audit_trail
from ..core._calls import check_call
from ..core._errors import ConfigurationError
from ..core._events import Event, decode_all
from ..core._queue import Queue
from ..core._records import OPERATOR_ACTIONS
from ..core._workflow import WorkflowDefinition
from ..runtime._clock import Clock
from ..runtime._commit import Committer
from ..runtime._gateway import Gateway
from ..runtime._host import exit_nursery, require_trio
from ..runtime._operator import Operator
from ..runtime._paths import open_store, shared, store_path, try_worker_lock, where
from ..runtime._ports import Parts, ScheduleHost, Settings
from ..runtime._scheduler import Scheduler
from ..runtime._schedules import ScheduleManager
from . import _wire
from ._channel import ClientChannel


class Client(Gateway):
    """Start, signal, cancel, wait and read a store that a worker serves (or none does).

    Use as ``async with durably.Client(path) as client:``. While it waits, it re-reads the
    store every ``poll_interval`` seconds in case a wake-up from the worker is lost.
    A path must hold a store already (``StoreNotFoundError`` otherwise, so that a typo
    does not create an empty store no worker serves); ``create=True`` makes a new one.
    Workflows may be started by name without their definitions (the input is stored as
    given, and the worker checks it when it runs it); ``workflows=`` gives their types to
    ``start`` and ``wait``.
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str],
        *,
        workflows: Iterable[WorkflowDefinition[Any, Any]] = (),
        poll_interval: float = 1.0,
        clock: Clock | None = None,
        max_payload_bytes: int = 16 * 1024 * 1024,
        create: bool = False,
    ) -> None:
        settings = Settings(max_payload_bytes=max_payload_bytes)
        if not isinstance(store, Store):
            store = store_path(store, "Client")
        super().__init__(store, workflows=workflows, clock=clock, settings=settings)
        self._registry.face = "client"  # names it does not know are the worker's to check
        self._create = create
        self._poll_interval = poll_interval
        self._channel = ClientChannel(None)
        self._operator: Operator | None = None

    async def __aenter__(self) -> Client:
        require_trio("Client")
        if self._running:
            raise ConfigurationError("this client is already open; create one per use")
        if self._owns_store:
            self.store = open_store(
                self._store_arg,  # type: ignore[arg-type]
                face="Client",
                lock=False,
                create=self._create,
            )
        self.clock.bind()
        self._committer = Committer(self.store)
        # A scheduler that never runs: the local fallback of a schedule call (no worker
        # holds the store) writes its timer to the index, where the worker finds it.
        scheduler = Scheduler(self.store, self.clock, lambda *a: None)
        parts = Parts(
            self.store, self._committer, scheduler, self.clock, self._settings, self._registry
        )
        self._schedules = ScheduleManager(ScheduleHost(parts, self._start, lambda: False))
        store_path = getattr(self.store, "path", None)
        self._channel = ClientChannel(
            None if store_path is None else _wire.worker_socket_path(store_path)
        )
        # Only a store other processes write has a worker in another process to tell.
        self._notifies_worker = shared(self.store)
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        try:
            await nursery.start(self._committer.run)
            await self._channel.open(nursery)
        except BaseException as exc:
            self._committer.close()
            nursery.cancel_scope.cancel()
            await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            if self._owns_store:
                self.store.close()
            raise
        self._nursery = nursery
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._running = False
        self._committer.close()
        self._nursery.cancel_scope.cancel()
        try:
            return await exit_nursery(self._nursery_cm, exc_type, exc, tb)
        finally:
            self._channel.close()
            if self._owns_store:
                self.store.close()

    # --- the Gateway's hooks: a client's writes carry an inbox entry; it hints the worker ---

    #: Each start, signal and cancel request is committed with its inbox entry.
    _notifies_worker = True

    def _started(self, record: ExecutionRecord, first: Event) -> None:
        self._channel.hint({"op": "wake", "eid": record.id})

    def _declared_queue(self, name: str) -> Queue | None:
        for stored, data in self.store.list_queues():
            if stored == name:
                return Queue.from_data(name, data)
        return None  # no worker has declared it yet: it waits for one that does

    def _enqueued(self, record: ExecutionRecord) -> None:
        self._channel.hint({"op": "wake", "eid": record.id})

    def _signalled(self, execution_id: str, name: str, waiting: bool) -> None:
        self._channel.hint({"op": "signal", "eid": execution_id})

    def _cancel_requested(
        self, execution_id: str, reason: str | None, by: str | None, *, durable: bool
    ) -> None:
        if durable:
            self._channel.hint({"op": "cancel", "eid": execution_id})

    async def _wait_finished(self, execution_id: str) -> None:
        await self._channel.wait_finished(execution_id, self._poll_interval)

    async def _in_worker(
        self, method: str, wire: dict[str, Any], local: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run a call that must not race the worker's own writes where it is safe: in
        the store's worker, or here when no worker holds the store (its lock is held
        meanwhile, so none starts). Both ways the arguments pass the worker's checks."""
        check_call(method, wire)
        if not shared(self.store):
            return await local()
        lock = try_worker_lock(self.store)
        if lock is not None:
            try:
                return await local()
            finally:
                lock.close()
        target = wire.get("execution_id") or wire.get("schedule_id")
        route = None
        if isinstance(target, str):  # the call goes to the owner, if many workers serve it
            route = target if "execution_id" in wire else f"schedule:{target}"
        return await self._channel.call(
            self._committer.commit,
            self.clock.now_ms,
            method,
            wire,
            route=route,
            max_payload_bytes=self._settings.max_payload_bytes,
            poll_interval=self._poll_interval,
            store_path=where(self.store),
        )

    # --- reading and operating ---

    async def audit(self, execution_id: str) -> list[AuditEntry]:
        """The execution's audit trail, derived from its log (oldest first)."""
        self._get_record(execution_id)
        return audit_trail(execution_id, decode_all(self.store.read_events(execution_id)))

    @property
    def operator(self) -> Operator:
        """Read and repair executions; actions run in the store's worker (``operate``)."""
        if self._operator is None:
            self._operator = Operator(self.store)
        return self._operator

    async def operate(self, action: str, execution_id: str, **kwargs: Any) -> None:
        """Run an operator action (``retry``, ``cancel``, ``force_fail``, ``skip_step``,
        ``retry_rollback``) in the store's worker, answered when done; with no worker
        running, here, holding the worker lock so that none starts meanwhile."""
        self._check_running()
        if action not in OPERATOR_ACTIONS:
            raise ConfigurationError(
                f"unknown operator action {action!r}; one of {', '.join(OPERATOR_ACTIONS)}"
            )
        await self._in_worker(
            action,
            {"execution_id": execution_id, **kwargs},
            lambda: getattr(self.operator, action)(execution_id, **kwargs),
        )
