"""Durable queues: their declaration (``Queue``), what they report (``QueueStats``), and
the admission policy (``Admission``), written as pure logic so a model can check it.

Rules of this module:

- The store is the truth: a queued execution is a record in status ``queued`` that names
  its queue; an admitted one is a record of that queue in any other active status. An
  ``Admission`` is rebuilt from those records (and the recent admissions the store
  keeps) after every start, so it forgets nothing a crash could take.
- ``take`` reserves what it returns: the running counts and the rate window include an
  execution from the moment it is chosen, before its admission is written, so no limit
  is passed while the write is in flight. ``refused`` gives a reservation back.
- Fairness: partitions take turns. Each partition has its own line (by priority, then
  arrival); the partition served goes to the back of the turns among those whose head
  has the same priority, so a partition with 10,000 queued executions admits one, then
  lets the partition with 10 admit one.
- Rate limits are a sliding log: at most ``count`` admissions in any ``seconds``-long
  window, half open (an admission at ``t`` stops counting at ``t + seconds``).
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections import Counter, deque
from typing import Any

import attrs

from ._errors import ConfigurationError

#: Admissions are kept (in memory and in the store) at least this long, for the stats.
STATS_WINDOW_MS = 60_000
#: The largest priority number (and the smallest, negated): a JSON integer any reader keeps.
MAX_PRIORITY = 2**31 - 1


def _positive(what: str) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if type(value) is not int or value < 1:
            raise ConfigurationError(f"{what} must be a positive int or None, not {value!r}")

    return check


def _check_rate(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, tuple) and len(value) == 2
    if ok:
        count, seconds = value
        ok = type(count) is int and count >= 1
        ok = ok and isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        ok = ok and math.isfinite(seconds) and seconds > 0
    if not ok:
        raise ConfigurationError(
            f"rate_limit must be (count, seconds), a positive int and a positive number of "
            f"seconds (for example (1000, 1.0)), not {value!r}"
        )


def _check_bool(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not bool:
        raise ConfigurationError(f"{attribute.name} must be True or False, not {value!r}")


def _check_name(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 200:
        raise ConfigurationError(
            f"a queue name must be a non-empty string of at most 200 characters without "
            f"NUL, not {value!r}"
        )


@attrs.frozen
class Queue:
    """A named durable queue: declare it on the engine (``Engine(..., queues=[...])``)
    and enqueue executions on it (``engine.enqueue``).

    ``concurrency`` bounds the executions of the queue running at once (waiting and
    sleeping ones count: they hold their place until they end); ``rate_limit`` is
    ``(count, seconds)``: at most ``count`` admissions in any window of ``seconds``;
    ``partition_concurrency`` bounds the running executions of one partition key;
    ``priority`` admits lower priority numbers first (otherwise arrival order).
    """

    name: str = attrs.field(validator=_check_name)
    concurrency: int | None = attrs.field(default=None, validator=_positive("concurrency"))
    rate_limit: tuple[int, float] | None = attrs.field(default=None, validator=_check_rate)
    partition_concurrency: int | None = attrs.field(
        default=None, validator=_positive("partition_concurrency")
    )
    priority: bool = attrs.field(default=False, validator=_check_bool)

    def to_data(self) -> dict[str, Any]:
        """The declaration as the store keeps it (``durably queues`` reads it)."""
        return {
            "concurrency": self.concurrency,
            "rate_limit": list(self.rate_limit) if self.rate_limit is not None else None,
            "partition_concurrency": self.partition_concurrency,
            "priority": self.priority,
        }

    @classmethod
    def from_data(cls, name: str, data: Any) -> Queue:
        """The declaration a worker stored; ``ConfigurationError`` if it is not one."""
        if not isinstance(data, dict):
            raise ConfigurationError(f"the stored declaration of queue {name!r} is not a mapping")
        rate = data.get("rate_limit")
        return cls(
            name,
            concurrency=data.get("concurrency"),
            rate_limit=(rate[0], rate[1]) if isinstance(rate, list) and len(rate) == 2 else rate,
            partition_concurrency=data.get("partition_concurrency"),
            priority=data.get("priority", False),
        )


@attrs.frozen
class QueueStats:
    """How a queue stands (``engine.queue_stats(name)``, ``durably queues``)."""

    name: str
    queued: int
    """Executions waiting to be admitted (``delayed`` included)."""
    delayed: int
    """Queued executions whose delay (or debounce period) has not passed yet."""
    running: int
    """Admitted executions that have not ended (waiting and sleeping ones included)."""
    admitted_per_second: float
    """Admissions over the last minute, per second."""
    oldest_wait_s: float | None
    """How long the longest-waiting admissible execution has waited (``None``: none)."""


def check_priority(value: Any) -> int:
    if type(value) is not int or not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ConfigurationError(
            f"priority must be an int between {-MAX_PRIORITY} and {MAX_PRIORITY}, not {value!r}"
        )
    return value


@attrs.define(eq=False, slots=True)
class Item:
    """A queued execution as admission sees it."""

    execution_id: str
    priority: int
    partition: str | None
    #: When it may be admitted (its enqueue time, or later with a delay), epoch ms.
    ready_ms: int
    #: Arrival order, the tie-break after priority.
    order: int
    #: Which offer of the execution this is: heap entries of an earlier one are stale.
    version: int = 0
    #: When ``take`` reserved it (epoch ms).
    taken_ms: int = 0


class Admission:
    """The admission state of one queue; see the module's rules."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._items: dict[str, Item] = {}
        self._delayed: list[tuple[int, int, str]] = []
        self._lines: dict[str | None, list[tuple[int, int, int, str]]] = {}
        #: Partitions that have a line and room: (head priority, turn stamp, partition).
        self._turns: list[tuple[int, int, str | None]] = []
        #: Each partition's one current turn, (head priority, stamp): older entries of the
        #: heap are stale.
        self._turn_of: dict[str | None, tuple[int, int]] = {}
        #: The arrival order of reservations given back (``refused``), kept until the next
        #: ``take`` for the execution's offer again, so it does not lose its place in line.
        self._returned: dict[str, int] = {}
        self._stamp = 0
        self._order = 0
        self.running: dict[str, str | None] = {}
        self._running_in: Counter[str | None] = Counter()
        self._window: deque[int] = deque()
        #: Every admission kept for the stats window (and the store's deletes).
        self.log: deque[tuple[int, str]] = deque()
        self._period_ms = 0 if queue.rate_limit is None else math.ceil(queue.rate_limit[1] * 1000)

    # --- what the queue holds ---

    def __contains__(self, execution_id: str) -> bool:
        return execution_id in self._items or execution_id in self.running

    @property
    def queued(self) -> int:
        return len(self._items)

    def offer(self, execution_id: str, priority: int, partition: str | None, ready_ms: int) -> None:
        """A queued execution (again: a later offer replaces the earlier one)."""
        if execution_id in self.running:
            return
        priority = priority if self.queue.priority else 0
        old = self._items.get(execution_id)
        if old is not None and (old.priority, old.partition, old.ready_ms) == (
            priority,
            partition,
            ready_ms,
        ):
            return  # told again (a hint and a recovery): nothing changed
        self._order += 1
        # A debounce keeps its place, and so does a reservation given back.
        order = old.order if old is not None else self._returned.pop(execution_id, self._order)
        item = Item(execution_id, priority, partition, ready_ms, order, self._order)
        self._items[execution_id] = item
        heapq.heappush(self._delayed, (item.ready_ms, item.version, execution_id))

    def _line_push(self, item: Item) -> None:
        line = self._lines.get(item.partition)
        if line is None:
            line = self._lines[item.partition] = []
        heapq.heappush(line, (item.priority, item.order, item.version, item.execution_id))
        turn = self._turn_of.get(item.partition)
        if turn is not None and item.priority < turn[0]:
            self._rekey(item.partition, item.priority, turn[1])  # a better head: sooner
        self._turn(item.partition)

    def _turn(self, partition: str | None) -> None:
        """Put the partition among the turns if it has a line and room (a fresh stamp
        only when it is not there yet, so it keeps its place)."""
        if partition in self._turn_of or not self._has_room(partition):
            return
        head = self._head(partition)
        if head is None:
            return
        self._stamp += 1
        self._rekey(partition, head.priority, self._stamp)

    def _rekey(self, partition: str | None, priority: int, stamp: int) -> None:
        """The partition's turn, ordered by its head's priority (its stamp, its place
        among partitions of that priority, kept)."""
        self._turn_of[partition] = (priority, stamp)
        heapq.heappush(self._turns, (priority, stamp, partition))

    def _has_room(self, partition: str | None) -> bool:
        limit = self.queue.partition_concurrency
        return partition is None or limit is None or self._running_in[partition] < limit

    def admitted_before(self, execution_id: str, partition: str | None) -> None:
        """An execution of this queue already admitted (found at recovery, or run by an
        operator's retry): it counts against the limits until it ends."""
        self._items.pop(execution_id, None)
        if execution_id not in self.running:
            self.running[execution_id] = partition
            self._running_in[partition] += 1

    def remember(self, at_ms: int, execution_id: str) -> None:
        """An admission the store keeps (read at recovery): it fills the rate window."""
        self.log.append((at_ms, execution_id))
        self._window.append(at_ms)

    def ended(self, execution_id: str) -> None:
        """The execution ended (or left the queue): its place frees."""
        self._items.pop(execution_id, None)
        self._returned.pop(execution_id, None)
        partition = self.running.pop(execution_id, _GONE)
        if partition is _GONE:
            return
        self._running_in[partition] -= 1
        if not self._running_in[partition]:
            del self._running_in[partition]
        self._turn(partition)

    # --- admitting ---

    def take(self, now_ms: int) -> list[Item]:
        """Reserve and return what may be admitted at ``now_ms``, best first."""
        self._returned.clear()  # not offered again since: it left the queue
        self._promote(now_ms)
        out: list[Item] = []
        limit = self.queue.concurrency
        rate = self.queue.rate_limit
        while self._turns:
            if limit is not None and len(self.running) >= limit:
                break
            if rate is not None and self._in_window(now_ms) >= rate[0]:
                break
            priority, stamp, partition = heapq.heappop(self._turns)
            if self._turn_of.get(partition) != (priority, stamp):
                continue  # a stale turn
            del self._turn_of[partition]
            item = self._head(partition)
            if item is None:
                continue
            if item.priority != priority:
                # Its head left the line (ended, offered again): the turn goes where the
                # new head's priority belongs, keeping its place among those.
                self._rekey(partition, item.priority, stamp)
                continue
            if not self._has_room(partition):
                continue  # back among the turns when one of its executions ends
            heapq.heappop(self._lines[partition])
            del self._items[item.execution_id]
            self.running[item.execution_id] = partition
            self._running_in[partition] += 1
            if rate is not None:  # only a rate limit reads the window: no log without one
                self._window.append(now_ms)
            self.log.append((now_ms, item.execution_id))
            item.taken_ms = now_ms
            out.append(item)
            self._turn(partition)
        return out

    def _head(self, partition: str | None) -> Item | None:
        line = self._lines.get(partition)
        while line:
            _, _, version, eid = line[0]
            item = self._items.get(eid)
            if item is not None and item.version == version:
                return item
            heapq.heappop(line)  # admitted, ended, or offered again since
        self._lines.pop(partition, None)
        return None

    def _promote(self, now_ms: int) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now_ms:
            _, version, eid = heapq.heappop(delayed)
            item = self._items.get(eid)
            if item is not None and item.version == version:
                self._line_push(item)

    def _in_window(self, now_ms: int) -> int:
        window = self._window
        while window and window[0] <= now_ms - self._period_ms:
            window.popleft()
        return len(window)

    def refused(self, item: Item) -> None:
        """The store did not admit ``item`` (it left the queue meanwhile, or its due time
        moved, or the commit failed). Offered again before the next ``take``, it keeps its
        place in line."""
        self.ended(item.execution_id)
        self._returned[item.execution_id] = item.order
        with contextlib.suppress(ValueError):
            self._window.remove(item.taken_ms)
        with contextlib.suppress(ValueError):
            self.log.remove((item.taken_ms, item.execution_id))

    def expired(self, now_ms: int) -> list[tuple[int, str]]:
        """Admissions older than every window that needs them (the store deletes them)."""
        keep = max(self._period_ms, STATS_WINDOW_MS)
        out = []
        log = self.log
        while log and log[0][0] <= now_ms - keep:
            out.append(log.popleft())
        return out

    def next_ms(self, now_ms: int) -> int | None:
        """The first instant from which ``take`` may admit something without an end or
        an offer meanwhile: ``now_ms`` itself if it may admit now (``None``: only an
        execution ending or a new offer can change that).

        ``now_ms`` may be later than the last ``take``: the manager asks after its pass's
        commit, and ``stats`` promotes due items in between. A rate window that opened
        since, or a line that ``stats`` filled, is due now; answering only for what time
        has yet to change would leave it waiting for an event that may never come.
        """
        candidates = []
        if self._delayed:
            candidates.append(self._delayed[0][0])
        rate = self.queue.rate_limit
        has_line = bool(self._turns)  # perhaps only stale turns: one needless pass at most
        room = self.queue.concurrency is None or len(self.running) < self.queue.concurrency
        if has_line and room:
            if rate is not None and self._in_window(now_ms) >= rate[0]:
                candidates.append(self._window[0] + self._period_ms)
            else:
                candidates.append(now_ms)
        return min(candidates) if candidates else None

    # --- seeing it ---

    def stats(self, now_ms: int) -> QueueStats:
        self._promote(now_ms)
        delayed = sum(1 for item in self._items.values() if item.ready_ms > now_ms)
        ready = [item.ready_ms for item in self._items.values() if item.ready_ms <= now_ms]
        recent = sum(1 for at, _ in self.log if at > now_ms - STATS_WINDOW_MS)
        return QueueStats(
            name=self.queue.name,
            queued=len(self._items),
            delayed=delayed,
            running=len(self.running),
            admitted_per_second=recent / (STATS_WINDOW_MS / 1000),
            oldest_wait_s=(now_ms - min(ready)) / 1000 if ready else None,
        )


_GONE: Any = object()
