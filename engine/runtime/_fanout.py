"""``ctx.gather``: durable calls of one execution, run concurrently.

Rules of this module:

- A gather is one command of the log (``GatherStarted`` ... ``GatherEnded``); its members
  are matched by step id in any order (``core/_replay.py``), so a replay is deterministic
  whatever order they finished in the first time.
- Each member runs in its own task and makes durable calls one at a time, as a workflow
  does; a member's derived step ids come from its argument position.
- Errors fail fast: the first member to fail cancels the others, and its error is raised
  (the ``GatherEnded`` names it, so a replay raises the same one and runs nothing the
  first run did not). ``return_exceptions=True`` collects errors as results instead.
- Members waiting for one signal share its entries in the order their waits began (waits
  begun at one instant in step-id order: ``decide.taken_in_gather``), never in the order
  the scheduler runs the members a wake made ready, so a resumed run gives each the same
  entry. The waits a replayed log leaves open count as open from the gather's start.
- Members' compensations are registered when the gather ends, in argument order (each
  member's in the order its steps completed), never in the order trio resumed them, so a
  rollback undoes them in reverse argument order on every run and replay. A step whose
  completion the log holds counts, though its member was cancelled before it returned.
- Inside a gather the record says ``running`` and the execution never parks: its waits
  overlap, and one record cannot name them all. Recovery resumes it; its timers are in the
  index and its signals in the mailbox, so nothing it waits for is lost.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from durably.stores import RemoveTimer

from ..core._errors import ConfigurationError
from ..core._events import Event, GatherEnded, GatherStarted, SignalWaiting, StepCompleted
from ..core._replay import NotInGather
from ._primitive import ContextBase, Members, _ControlFlow, unwinds

T = TypeVar("T")


class Fanout(ContextBase):
    """The ``gather`` half of ``Context``."""

    #: While a ``ctx.gather`` runs: its members' open signal waits, by step id (the
    #: members share this Context, and so the waits that share a signal's entries).
    _waits: dict[str, SignalWaiting] | None = None
    #: While a ``ctx.gather`` runs: its members' compensations by member position, each
    #: with whether its step's completion is known to be written (``_hold``).
    _gathered: dict[int, list[tuple[str, Callable[[Any], Any], Any, bool]]] | None = None

    async def gather(
        self,
        *calls: Awaitable[T],
        limit: int | None = None,
        return_exceptions: bool = False,
        step_id: str | None = None,
    ) -> list[T]:
        """Run durable calls (steps, children, sleeps, signal waits, or async functions
        making such calls one at a time) concurrently; their results in argument order.

        ``limit`` caps how many run at once. The first error cancels the others and is
        raised, unless ``return_exceptions=True`` (then errors are results). A crash in
        the middle re-runs only the members not yet recorded.
        """
        try:
            _check(calls, limit, nested=self._members is not None)
            sid = self._step_id(step_id, "gather", False)
            self._enter()
        except BaseException:
            _close(calls)
            raise
        actor = self._actor
        try:
            recorded = actor.replayer.issue(sid, "gather")
            ended = None
            if recorded is None:
                # Committed on its own (one commit per gather): the members' time starts
                # here, and a resumed run records the same start.
                event = GatherStarted(at=actor.parts.clock.now_ms(), step_id=sid, size=len(calls))
                await actor.append(event, sid)
            else:
                ended = next((e for e in recorded if isinstance(e, GatherEnded)), None)
            actor.replayer.open_group(sid, recorded is not None)
            members = Members(sid)
            results: list[Any] = [None] * len(calls)
            errors: list[tuple[str | None, BaseException]] = []
            self._members = members
            # The waits the log leaves open are open from the start, though their members
            # have not reached them again: a member that looks at the mailbox first must
            # leave them what they take (``decide.taken_in_gather``).
            self._waits = {w.step_id: w for w in actor.replayer.open_waits()}
            self._gathered = {}
            writer = actor.begin_gather()
            try:
                async with trio.open_nursery() as outer:
                    outer.start_soon(writer.run)
                    try:
                        await self._run_members(
                            members, calls, results, errors, limit, return_exceptions
                        )
                    finally:
                        writer.close()
            except BaseExceptionGroup as group:
                raise _control_flow(group) from None
            finally:
                self._members = None
                self._waits = None
                self._register_gathered()
                actor.end_gather()
            failure = _chosen(errors, ended)
            actor.replayer.close_group(failure is not None)
            if ended is None:
                error_step = None if failure is None else failure[0]
                now = actor.parts.clock.now_ms()
                end = GatherEnded(at=now, step_id=sid, error_step=error_step)
                actor.stage(end, sid, [RemoveTimer(t) for t in members.abandoned])
            for timer in members.abandoned:
                actor.parts.scheduler.disarm(timer)
            if failure is not None:
                raise failure[1]
            return results
        finally:
            self._busy = False
            _close(calls)  # members never started (a failure came first)

    def _compensate_later(self, sid: str, undo: Callable[[Any], Any], value: Any) -> None:
        """Inside a gather, held by member position until the gather ends (see
        ``_register_gathered``); otherwise registered at once. (``Context.step`` reaches
        this override: no other half of ``Context`` defines it.)"""
        self._hold(sid, undo, value, written=True)

    def _compensate_if_written(self, sid: str, undo: Callable[[Any], Any], value: Any) -> None:
        """A step's completion was handed to the log, and its member cancelled before it
        returned (another member failed): the gather's writer still writes it, and a
        replay answers it, so its compensation counts once the log holds it."""
        self._hold(sid, undo, value, written=False)

    def _hold(self, sid: str, undo: Callable[[Any], Any], value: Any, *, written: bool) -> None:
        gathered = self._gathered
        members = self._members
        position = None
        if gathered is not None and members is not None:
            position = members.index.get(trio.lowlevel.current_task())
        if gathered is None or position is None:
            if written:
                super()._compensate_later(sid, undo, value)
            return  # cancelled outside a gather: the run ends, nothing rolls back
        gathered.setdefault(position, []).append((sid, undo, value, written))

    def _register_gathered(self) -> None:
        """The gather is over: register its members' compensations in argument order
        (each member's in the order its steps completed), so a rollback undoes them in
        reverse argument order. Members finish concurrently, in an order trio's
        scheduler picks and a resumed run does not reproduce; their positions are the
        same on every run and every replay."""
        gathered = self._gathered
        self._gathered = None
        if not gathered:
            return
        replayer = self._actor.replayer
        for position in sorted(gathered):
            for sid, undo, value, written in gathered[position]:
                if written or _completed(replayer.events_of(sid)):
                    super()._compensate_later(sid, undo, value)

    async def _run_members(
        self,
        members: Members,
        calls: tuple[Awaitable[Any], ...],
        results: list[Any],
        errors: list[tuple[str | None, BaseException]],
        limit: int | None,
        keep: bool,
    ) -> None:
        limiter = None if limit is None else _Slots(limit, len(calls))
        try:
            async with trio.open_nursery() as nursery:
                for position, call in enumerate(calls):
                    nursery.start_soon(
                        _member, members, position, call, results, errors, limiter, keep,
                        nursery.cancel_scope,
                    )  # fmt: skip
        except BaseExceptionGroup as group:
            raise _control_flow(group) from None


def _completed(events: list[Event]) -> bool:
    return bool(events) and isinstance(events[-1], StepCompleted)


def _check(calls: tuple[Awaitable[Any], ...], limit: int | None, *, nested: bool) -> None:
    if limit is not None and (type(limit) is not int or limit < 1):
        raise ConfigurationError(f"ctx.gather(limit=) must be an int >= 1; got {limit!r}")
    for call in calls:
        if not inspect.isawaitable(call):
            raise ConfigurationError(
                f"ctx.gather takes durable calls such as ctx.step(...) (not awaited yet); "
                f"got {call!r}"
            )
    if nested:
        raise ConfigurationError(
            "ctx.gather cannot run inside a member of another gather; gather the inner "
            "calls into the outer one"
        )


async def _member(
    members: Members,
    position: int,
    call: Awaitable[Any],
    results: list[Any],
    errors: list[tuple[str | None, BaseException]],
    limiter: _Slots | None,
    keep: bool,
    scope: trio.CancelScope,
) -> None:
    try:
        if limiter is None:
            results[position] = await _joined(members, position, call)
        else:
            await limiter.turn(position)
            try:
                results[position] = await _joined(members, position, call)
            finally:
                limiter.release()
    except NotInGather:
        pass  # cut short on the first run by another member's failure: not run again
    except BaseException as exc:
        if unwinds(exc):
            raise
        if keep:
            results[position] = exc
            return
        errors.append((members.step_of.get(trio.lowlevel.current_task()), exc))
        scope.cancel()
    finally:
        _close((call,))  # never started (cancelled while waiting for the limiter)


class _Slots:
    """``limit`` members at a time, admitted in argument order (not in whatever order the
    scheduler runs their tasks), so a replay starts them at the same instants."""

    def __init__(self, limit: int, size: int) -> None:
        self._turns = [trio.Event() for _ in range(size)]
        self._next = 0
        self._free = limit
        self._admit()

    def _admit(self) -> None:
        while self._free > 0 and self._next < len(self._turns):
            self._turns[self._next].set()
            self._next += 1
            self._free -= 1

    async def turn(self, position: int) -> None:
        turn = self._turns[position]
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():  # admitted as it was cancelled: the slot goes on
                self.release()
            raise

    def release(self) -> None:
        self._free += 1
        self._admit()


async def _joined(members: Members, position: int, call: Awaitable[Any]) -> Any:
    members.join(position)
    return await call


def _chosen(
    errors: list[tuple[str | None, BaseException]], ended: GatherEnded | None
) -> tuple[str | None, BaseException] | None:
    """The error the gather raises: the one its record names on a replay, else the first."""
    if not errors:
        return None
    if ended is not None and ended.error_step is not None:
        for error in errors:
            if error[0] == ended.error_step:
                return error
    return errors[0]


def _control_flow(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a members' nursery stands for when it raises: durably's own unwinding (a
    failed store) or the host's interrupt, unwrapped so the actor recognises it."""
    leaves: list[BaseException] = []
    _flatten(group, leaves)
    for leaf in leaves:
        if isinstance(leaf, _ControlFlow | KeyboardInterrupt):
            return leaf
    return group


def _flatten(exc: BaseException, into: list[BaseException]) -> None:
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            _flatten(member, into)
    else:
        into.append(exc)


def _close(calls: tuple[Awaitable[Any], ...]) -> None:
    """Close coroutines that will not run, so Python does not warn they were never awaited."""
    for call in calls:
        if inspect.iscoroutine(call) and inspect.getcoroutinestate(call) == inspect.CORO_CREATED:
            call.close()
