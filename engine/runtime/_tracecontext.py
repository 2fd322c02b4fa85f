"""The trace context a new execution inherits from its start (``durably[otel]``).

A start made inside an active OpenTelemetry span (a traced request handler calling
``engine.start``, a client's start, a workflow's ``ctx.child`` under its run span) stores
that span's W3C ``traceparent`` in the new record, so the execution's run spans join the
starter's trace. Nothing is imported here: if the host never imported OpenTelemetry, no
span can be active, and the cost of a start is one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import sys

#: Telemetry off: an actor's run is wrapped in this, which does nothing.
NO_SPAN = contextlib.nullcontext()


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` (no valid span)."""
    if "opentelemetry.trace" not in sys.modules:
        return None
    from opentelemetry import propagate, trace

    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")
