"""``serve_prometheus``: durably's metrics over HTTP for Prometheus to scrape.

OpenTelemetry's Prometheus reader turns the metrics into Prometheus' text format and
prometheus_client serves them from a daemon thread; both are in ``durably[prometheus]``.
The registry is the endpoint's own, so two endpoints in one process (tests) never mix.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..core._errors import ConfigurationError
from ._hook import Telemetry, TelemetryUnavailableError


@attrs.frozen
class MetricsEndpoint:
    """A running metrics endpoint: pass ``telemetry`` to the engine, ``close()`` at exit."""

    telemetry: Telemetry
    """Record through this (``Engine(..., telemetry=endpoint.telemetry)``)."""
    host: str
    port: int
    """The port it listens on (the one chosen, if 0 was asked for)."""
    _server: Any = attrs.field(repr=False)
    _provider: Any = attrs.field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._provider.shutdown()


def serve_prometheus(port: int, host: str = "127.0.0.1") -> MetricsEndpoint:
    """Serve durably's metrics at ``http://host:port/metrics`` (port 0: any free port).

    Traces still go to the host's global tracer provider. Bind another ``host`` (such as
    ``"0.0.0.0"``) only on a network Prometheus alone can reach: the endpoint has no auth.
    """
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as exc:
        raise TelemetryUnavailableError(
            "serve_prometheus needs pip install 'durably[prometheus]' "
            "(opentelemetry-sdk, opentelemetry-exporter-prometheus, prometheus-client)"
        ) from exc
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader])
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        provider.shutdown()
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc}; choose a free port"
        ) from exc
    telemetry = Telemetry(meter_provider=provider)
    return MetricsEndpoint(telemetry, host, server.server_port, server, provider)
