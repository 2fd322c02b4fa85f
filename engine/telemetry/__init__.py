"""OpenTelemetry tracing and metrics for durably (the optional extra ``durably[otel]``).

``Engine(..., telemetry=True)`` traces and measures with the host's global providers;
``Engine(..., telemetry=Telemetry(tracer_provider=..., meter_provider=...))`` with the
given ones; ``serve_prometheus(port)`` serves the metrics for Prometheus to scrape. See
"Telemetry" in docs/operations.md for the spans, their attributes and the metrics.
"""

from __future__ import annotations

from ._hook import Telemetry, TelemetryUnavailableError
from ._prometheus import MetricsEndpoint, serve_prometheus

__all__ = ["MetricsEndpoint", "Telemetry", "TelemetryUnavailableError", "serve_prometheus"]
