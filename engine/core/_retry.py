"""Retry policies for steps: how many attempts, how long between them."""

from __future__ import annotations

import attrs

from ._errors import ConfigurationError


def _positive(_inst: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ConfigurationError(f"Retry.{attribute.name} must be >= 0, got {value}")


@attrs.frozen
class Retry:
    """Retry a failing step up to ``max_attempts`` times (the first run counts).

    The delay before attempt ``n + 1`` is ``initial * backoff ** (n - 1)`` seconds, capped
    at ``max_delay``. The wait is durable: a retry waiting for its delay survives a restart
    and does not hold a live actor. Only exceptions that are instances of ``retry_on`` are
    retried; others fail the step at once.
    """

    max_attempts: int = 3
    initial: float = attrs.field(default=1.0, validator=_positive)
    backoff: float = attrs.field(default=2.0, validator=_positive)
    max_delay: float = attrs.field(default=300.0, validator=_positive)
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("Retry.max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.initial * self.backoff ** (attempt - 1), self.max_delay))

    def allows(self, error: BaseException, attempt: int) -> bool:
        """Whether ``error``, raised by attempt number ``attempt``, gets another attempt."""
        return attempt < self.max_attempts and isinstance(error, self.retry_on)
