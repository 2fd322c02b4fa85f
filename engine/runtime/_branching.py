"""``ctx.switch`` and ``ctx.rollback``: the branch a run takes, and undoing what it did.

Both record their outcome once (a switch its branch and result, a compensation that it
ran or failed) and replay it from the log; matchers and compensations never run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from ..core import _codec
from ..core._errors import ConfigurationError, DurablyError, NonDeterminismError
from ..core._events import CompensationCompleted, CompensationFailed, SwitchEvaluated
from ..core._history import error_info
from ._primitive import ContextBase, _call, _CompensationFailure


@attrs.frozen
class Branch:
    """One arm of ``ctx.switch``: ``match(value)`` chooses it, ``run(value)`` is its work."""

    id: str
    run: Callable[[Any], Any]
    match: Callable[[Any], bool] | None = None


class Branching(ContextBase):
    """Context's half for branches and compensation (see ``Context``)."""

    async def switch(
        self,
        step_id: str,
        value: Any,
        branches: Sequence[Branch],
        *,
        default: Branch | None = None,
    ) -> Any:
        """Choose the first branch whose ``match(value)`` is true and run it, durably.

        The chosen branch id and its result are recorded; a replay returns the recorded
        result without evaluating matchers. No match and no default raises.
        """
        sid = self._step_id(step_id, "switch", False)
        ids = [b.id for b in branches] + ([default.id] if default else [])
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"switch {sid!r}: branch ids must be unique, got {ids}")
        unmatched = [b.id for b in branches if b.match is None]
        if unmatched:
            raise ConfigurationError(
                f"switch {sid!r}: branches {unmatched} have no match=; only the default "
                "branch may go without one"
            )
        self._enter()
        try:
            actor = self._actor
            by_id = {b.id: b for b in branches}
            if default is not None:
                by_id[default.id] = default
            recorded = actor.replayer.issue(sid, "switch")
            if recorded is not None:
                event = recorded[0]
                assert isinstance(event, SwitchEvaluated)
                branch = by_id.get(event.branch_id)
                if branch is None:
                    raise NonDeterminismError(
                        f"execution {actor.execution_id}: switch {sid!r} recorded branch "
                        f"{event.branch_id!r}, which the code no longer has ({sorted(by_id)})",
                        execution_id=actor.execution_id,
                        step_id=sid,
                        recorded=event.branch_id,
                        attempted=",".join(sorted(by_id)),
                    )
                return _codec.load(event.result, _codec.return_type(branch.run), sid)
            chosen = next((b for b in branches if b.match is not None and b.match(value)), None)
            if chosen is None:
                chosen = default
            if chosen is None:
                raise DurablyError(
                    f"switch {sid!r}: no branch matched {value!r} and there is no default; "
                    "add default=durably.Branch(...)"
                )
            actor.caught_up()
            started = trio.current_time()
            result = await _call(chosen.run, (value,))
            shaped, result = _codec.roundtrip(
                result, _codec.return_type(chosen.run), f"switch {sid!r}"
            )
            await actor.append(
                SwitchEvaluated(
                    at=actor.parts.clock.now_ms(),
                    step_id=sid,
                    branch_id=chosen.id,
                    result=shaped,
                    duration_ms=(trio.current_time() - started) * 1000,
                ),
                sid,
            )
            return result
        finally:
            self._leave()

    async def rollback(self) -> None:
        """Run the registered compensations in reverse order, each recorded once.

        A compensation that raises ends the execution ``COMPENSATION_FAILED`` with the error
        recorded; ``operator.retry_rollback`` runs the failed ones again. Refused inside a
        gather's member: what it would undo would depend on which other members had
        finished by then, which differs from run to run.
        """
        if self._members is not None:
            raise ConfigurationError(
                "ctx.rollback cannot run inside a member of a gather (the other members "
                "run on, and what it would undo depends on which have finished); let the "
                "member fail or return, and roll back after the gather"
            )
        self._enter()
        try:
            actor = self._actor
            while self._compensations:
                step, undo, value = self._compensations.pop()
                sid = f"rollback:{step}"
                recorded = actor.replayer.issue(sid, "compensate")
                if recorded is not None:
                    last = recorded[-1]
                    if isinstance(last, CompensationCompleted):
                        continue
                    assert isinstance(last, CompensationFailed)
                    if last.round >= actor.rollback_round:
                        raise _CompensationFailure(last.error)
                    # An operator asked for the rollback again: this one runs again.
                actor.caught_up()
                started = trio.current_time()
                try:
                    await _call(undo, (value,))
                except Exception as exc:
                    info = error_info(exc)
                    await actor.append(
                        CompensationFailed(
                            at=actor.parts.clock.now_ms(),
                            step_id=sid,
                            error=info,
                            round=actor.rollback_round,
                        ),
                        sid,
                    )
                    raise _CompensationFailure(info) from exc
                await actor.append(
                    CompensationCompleted(
                        at=actor.parts.clock.now_ms(),
                        step_id=sid,
                        duration_ms=(trio.current_time() - started) * 1000,
                    ),
                    sid,
                )
        finally:
            self._leave()
