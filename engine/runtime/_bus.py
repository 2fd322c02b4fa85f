"""The event bus: live, best-effort publication of emits and audit entries.

Rules of this module:

- Publishing never blocks and never fails the publisher: an execution actor calls it right
  after its events are durable, and a slow subscriber must not slow a workflow down. Each
  subscription has a bounded buffer; when it is full, new messages for that subscription
  are dropped and counted (``Subscription.dropped``). Nothing is retried or persisted.
- Only what is committed is published, once: a replay does not publish again, because it
  records nothing new. A subscriber that was not listening misses the message; the log
  (``engine.audit``) is the durable record, the bus is for notifications.
- Subscriptions end when the engine stops: iteration finishes instead of hanging.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import attrs
import trio

from ..core._audit import AuditEntry, AuditTracker
from ..core._errors import ConfigurationError
from ..core._events import Emitted, Event


@attrs.frozen
class Emission:
    """A workflow's ``ctx.emit(event, payload)``, as delivered to subscribers."""

    execution_id: str
    event: str
    payload: Any
    step_id: str
    at: int


BusMessage = Emission | AuditEntry


class Subscription:
    """An async iterator of bus messages with a bounded buffer.

    Use as ``async with engine.subscribe(...) as sub: async for message in sub: ...``.
    Leaving the block unsubscribes. Iteration ends when the engine stops.
    """

    def __init__(
        self,
        bus: Bus,
        *,
        emits: bool,
        audit: bool,
        execution_id: str | None,
        events: frozenset[str] | None,
        buffer: int,
    ) -> None:
        self._bus = bus
        self.emits = emits
        self.audit = audit
        self.execution_id = execution_id
        self.events = events
        self._send, self._receive = trio.open_memory_channel[BusMessage](buffer)
        #: Messages dropped because this subscription's buffer was full.
        self.dropped = 0

    def _offer(self, message: BusMessage) -> None:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffered messages are read."""
        self._bus._remove(self)
        self._send.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BusMessage:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> BusMessage:
        """The next message; raises ``trio.EndOfChannel`` once the subscription ended."""
        return await self._receive.receive()

    def receive_nowait(self) -> BusMessage:
        """The next buffered message; raises ``trio.WouldBlock`` if there is none yet."""
        return self._receive.receive_nowait()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._receive.close()


class Bus:
    """Fans committed events out to subscriptions (see the module's rules)."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._tracker = AuditTracker()
        self._closed = False

    def subscribe(
        self,
        *,
        emits: bool = True,
        audit: bool = False,
        execution_id: str | None = None,
        events: Iterable[str] | None = None,
        buffer: int = 1000,
    ) -> Subscription:
        if buffer < 1:
            raise ConfigurationError("subscribe(buffer=) must be at least 1")
        if not emits and not audit:
            raise ConfigurationError("subscribe to emits, audit entries, or both")
        sub = Subscription(
            self,
            emits=emits,
            audit=audit,
            execution_id=execution_id,
            events=None if events is None else frozenset(events),
            buffer=buffer,
        )
        if self._closed:
            sub.close()
        else:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, execution_id: str, events: Sequence[Event], first_seq: int | None) -> None:
        entries: list[AuditEntry] = []
        if any(s.audit for s in self._subs):
            entries = self._tracker.entries(execution_id, events, first_seq)
        else:
            # Nobody reads audit entries: the status tracked so far would go stale.
            self._tracker.forget(execution_id)
        if not self._subs:
            return
        for sub in list(self._subs):
            if sub.execution_id is not None and sub.execution_id != execution_id:
                continue
            if sub.emits:
                for event in events:
                    if isinstance(event, Emitted) and (
                        sub.events is None or event.event in sub.events
                    ):
                        sub._offer(
                            Emission(
                                execution_id, event.event, event.payload, event.step_id, event.at
                            )
                        )
            if sub.audit:
                for entry in entries:
                    sub._offer(entry)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subs):
            sub.close()
