"""Per-endpoint request statistics, served as JSON by every HTTP service at ``GET /_stats``
and, the same figures, as Prometheus metrics (:meth:`ServiceStats.metric_families`, read by a
host with a ``metrics_port``): one counting engine for both.

Recording is on every request's path, so it is a handful of integer and float updates; the
percentiles are computed only when ``/_stats`` is asked, from a window of recent latencies.
The JSON format is described in ``docs/http.md``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from vyked.core.observe import Family, Histogram

LATENCY_WINDOW = 1024
"""How many recent latencies each endpoint keeps for its percentiles."""


class EndpointStats:
    """Counters and latencies of one endpoint (one decorated method, whatever its routes)."""

    __slots__ = (
        "_next",
        "_window",
        "errors",
        "latency",
        "latency_max",
        "latency_min",
        "name",
        "requests",
        "routes",
        "status_classes",
        "statuses",
        "timeouts",
        "websocket",
    )

    def __init__(self, name: str, routes: list[str], *, websocket: bool = False) -> None:
        self.name = name
        self.routes = routes
        self.websocket = websocket
        self.requests = 0
        self.errors = 0
        """Requests whose handler raised (answered 500, or 503 when a service it called was down)."""
        self.timeouts = 0
        """Requests whose handler ran past its timeout (answered 504)."""
        self.status_classes = [0] * 6  # index status // 100; 0 for anything out of range
        self.statuses: dict[int, int] = {}
        """Requests by the status they were answered."""
        self.latency = Histogram()
        """Latencies in the buckets of :data:`vyked.core.observe.LATENCY_BUCKETS`, with their sum."""
        self.latency_min = math.inf
        self.latency_max = 0.0
        self._window: list[float] = []
        self._next = 0

    def record(self, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests += 1
        self.status_classes[status // 100 if 100 <= status < 600 else 0] += 1
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if self.websocket:
            return  # a websocket's duration is its conversation, not a latency
        self.latency.observe(seconds)
        if seconds < self.latency_min:
            self.latency_min = seconds
        if seconds > self.latency_max:
            self.latency_max = seconds
        window = self._window
        if len(window) < LATENCY_WINDOW:
            window.append(seconds)
        else:
            window[self._next] = seconds
            self._next = (self._next + 1) % LATENCY_WINDOW

    def as_dict(self) -> dict[str, Any]:
        statuses = {f"{i}xx": n for i, n in enumerate(self.status_classes) if n and i}
        if self.status_classes[0]:
            statuses["other"] = self.status_classes[0]
        result: dict[str, Any] = {
            "routes": self.routes,
            "requests": self.requests,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "status": statuses,
        }
        if self.websocket:
            result["websocket"] = True
        else:
            result["latency_ms"] = self._latency()
        return result

    def _latency(self) -> dict[str, float | int]:
        count = self.latency.count
        if not count:
            return {"count": 0}
        ordered = sorted(self._window)
        return {
            "count": count,
            "mean": _ms(self.latency.sum / count),
            "min": _ms(self.latency_min),
            "max": _ms(self.latency_max),
            "p50": _ms(_percentile(ordered, 0.50)),
            "p90": _ms(_percentile(ordered, 0.90)),
            "p99": _ms(_percentile(ordered, 0.99)),
        }


class ServiceStats:
    """The statistics of one HTTP service instance."""

    def __init__(self, service: str, version: str, node_id: str) -> None:
        self.service = service
        self.version = version
        self.node_id = node_id
        self.started_at = time.time()
        self._started = time.monotonic()
        self.endpoints: dict[str, EndpointStats] = {}

    def reset_clock(self) -> None:
        """Count uptime from now (the service starts serving)."""
        self.started_at = time.time()
        self._started = time.monotonic()

    def endpoint(self, name: str, routes: list[str], *, websocket: bool = False) -> EndpointStats:
        """The stats of endpoint ``name``, created on first use."""
        stats = self.endpoints.get(name)
        if stats is None:
            stats = self.endpoints[name] = EndpointStats(name, routes, websocket=websocket)
        return stats

    def as_dict(self) -> dict[str, Any]:
        endpoints = {name: stats.as_dict() for name, stats in self.endpoints.items()}
        return {
            "service": self.service,
            "version": self.version,
            "node_id": self.node_id,
            "started_at": round(self.started_at, 3),
            "uptime_s": round(time.monotonic() - self._started, 3),
            "totals": {
                "requests": sum(s.requests for s in self.endpoints.values()),
                "errors": sum(s.errors for s in self.endpoints.values()),
                "timeouts": sum(s.timeouts for s in self.endpoints.values()),
            },
            "endpoints": endpoints,
        }

    def metric_families(self) -> list[Family]:
        """The same figures as :meth:`as_dict`, for Prometheus: requests by endpoint and status,
        handler errors and timeouts, latency histograms."""
        labels = [self.service, self.version]
        requests = Family(
            "vyked_http_requests_total",
            "HTTP requests answered, by endpoint (decorated method) and status",
            "counter",
            ["service", "version", "endpoint", "status"],
        )
        failures = Family(
            "vyked_http_handler_failures_total",
            "HTTP handlers that raised (error, answered 500) or ran past their timeout (timeout, 504)",
            "counter",
            ["service", "version", "endpoint", "failure"],
        )
        latency = Family(
            "vyked_http_request_duration_seconds",
            "HTTP requests answered: latency",
            "histogram",
            ["service", "version", "endpoint"],
        )
        for name, stats in list(self.endpoints.items()):
            for status, count in sorted(stats.statuses.items()):
                requests.add([*labels, name, str(status)], count)
            failures.add([*labels, name, "error"], stats.errors)
            failures.add([*labels, name, "timeout"], stats.timeouts)
            if not stats.websocket:
                latency.add([*labels, name], stats.latency)
        return [requests, failures, latency]


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
