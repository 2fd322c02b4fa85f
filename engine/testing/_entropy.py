"""Deterministic values: seeded ``ctx.random()`` and ``ctx.uuid()`` while a check runs."""

from __future__ import annotations

import random as _random_module
import uuid as _uuid_module
from collections.abc import Iterable

import orjson


class _Entropy:
    """Seeded stand-ins for the ``random`` and ``uuid`` modules as ``_context`` uses them.

    The n-th value of each kind an execution records is a function of (seed, kind, n).
    After a restart the counters are set to what the log already holds, so a value lost in
    the crash is drawn again identically, while an engine that wrongly re-drew a recorded
    value would get the next one, and differ.
    """

    UUID = _uuid_module.UUID

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.counts: dict[str, int] = {}
        self.drawn = 0
        """Values drawn since the engine (re)started: each must reach the log."""
        self.durable = 0
        """Values the log held when the engine restarted."""

    def _rng(self, kind: str) -> _random_module.Random:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        self.drawn += 1
        return _random_module.Random(f"{self.seed}:{kind}:{n}")

    def random(self) -> float:
        return self._rng("random").random()

    def uuid4(self) -> _uuid_module.UUID:
        return _uuid_module.UUID(int=self._rng("uuid").getrandbits(128), version=4)

    def resume_from(self, raws: Iterable[bytes]) -> None:
        self.counts = {}
        self.drawn = 0
        for raw in raws:
            data = orjson.loads(raw)
            if data.get("t") == "value" and data.get("kind") in ("random", "uuid"):
                self.counts[data["kind"]] = self.counts.get(data["kind"], 0) + 1
        self.durable = sum(self.counts.values())

    def unrecorded(self, raws: Iterable[bytes]) -> int:
        """How many values drawn since the restart the final log does not hold.

        Without this check the seeding would hide an engine that forgets to record a
        value: each replay would draw it again, identically.
        """
        recorded = sum(
            1
            for raw in raws
            if (data := orjson.loads(raw)).get("t") == "value"
            and data.get("kind") in ("random", "uuid")
        )
        return self.drawn - (recorded - self.durable)
