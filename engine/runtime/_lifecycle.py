"""The primitives about the run itself: patches, published values, continue-as-new and
the schedule fire time.

Rules of this module:

- ``patched`` is answered from the log: a marker recorded here means the run took the new
  branch; a replay that passes this point without one took the old branch; a run that
  reaches it as new work records the marker and takes the new branch.
- ``publish`` is durable before it returns, so a value read from outside was recorded.
- ``continue_as_new`` ends the run where it is called; the actor starts the next run under
  the same id with a fresh log (``_actor.py``), so callers keep one id for the chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from ..core import _codec
from ..core._errors import ConfigurationError
from ..core._events import PatchMarked, Published
from ..core._types import from_ms
from ._primitive import ContextBase, _ContinueAsNew


class Lifecycle(ContextBase):
    """Patches, published values, continue-as-new (a half of ``Context``)."""

    @property
    def run(self) -> int:
        """1 on an execution's first run; incremented by each ``continue_as_new``."""
        return self._actor.record.run

    @property
    def scheduled_at(self) -> datetime | None:
        """The fire time a schedule started this run for; ``None`` for other runs."""
        at = self._actor.facts.scheduled_at
        return None if at is None else from_ms(at)

    @property
    def parent_id(self) -> str | None:
        """The execution that started this one as its child, if any."""
        return self._actor.record.parent_id

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new code of patch ``patch_id``: True in new runs and
        in runs that reach this point for the first time after the deploy, False in runs
        whose log shows they passed it on the old code."""
        if not isinstance(patch_id, str) or not patch_id or "\x00" in patch_id:
            raise ConfigurationError("a patch id must be a non-empty string without NUL")
        patches = self._patches
        if patches is None:
            patches = self._patches = {}
        known = patches.get(patch_id)
        if known is not None:
            return known
        actor = self._actor
        sid = "patch:" + patch_id
        taken = actor.replayer.patch(sid)
        if taken is None:
            event = PatchMarked(at=actor.parts.clock.now_ms(), step_id=sid, patch=patch_id)
            actor.record_later(event, sid)
            taken = True
        patches[patch_id] = taken
        return taken

    def deprecate_patch(self, patch_id: str) -> None:
        """Patch ``patch_id``'s old branch is gone: runs still record its marker (so code
        that calls ``patched`` replays them), and a log that lacks it still replays."""
        self.patched(patch_id)

    async def publish(self, key: str, value: Any, *, step_id: str | None = None) -> None:
        """Publish ``value`` under ``key`` for the outside to read while the run goes on
        (``engine.read_published``); recorded, durable before this returns."""
        if not isinstance(key, str) or not key:
            raise ConfigurationError("ctx.publish needs a non-empty string key")
        sid = self._step_id(step_id, "publish", False)
        self._enter()
        try:
            actor = self._actor
            if actor.replayer.issue(sid, "publish") is not None:
                return
            shaped = _codec.shape(value, f"published value {key!r} at {sid!r}")
            event = Published(at=actor.parts.clock.now_ms(), step_id=sid, key=key, value=shaped)
            await actor.append(event, sid)
        finally:
            self._leave()

    def continue_as_new(self, input: Any) -> NoReturn:
        """End this run and start the next one of the same workflow with ``input`` and an
        empty log, under the same execution id; signals buffered meanwhile are kept."""
        if self._busy or self._members is not None:
            raise ConfigurationError(
                "ctx.continue_as_new is the workflow's own last word: call it from the "
                "workflow body, not from a step or a gather"
            )
        raise _ContinueAsNew(input)
