"""Telemetry of the gateway: Prometheus metrics, an optional OpenTelemetry span per request and
a savings report against always calling the most expensive model.

Every gateway has its own :class:`prometheus_client.CollectorRegistry` (several gateways in one
process do not collide); ``GET /metrics`` exposes it. Metric names (all prefixed
``cascade_routing_``):

=====================================  =========  ============================================
``decisions_total{tenant,model,outcome}``  counter    answered requests by answering model;
                                                      outcome ``ok`` / ``fallback`` / ``error``
``upstream_calls_total{model,status}``     counter    calls per model: ``ok`` or the failure kind
``upstream_failures_total{model,kind}``    counter    failed calls per model and kind
``cost_dollars_total{tenant,model}``       counter    measured spend per called model
``request_cost_dollars``                   histogram  total cost per request
``decision_seconds``                       histogram  time of a request outside upstream calls
``upstream_seconds{model}``                histogram  time of each upstream call
``request_seconds``                        histogram  end-to-end time of a request
``lambda{tenant}`` / ``lambda_scale{tenant}``  gauge  first-step ``λ`` in force; controller scale
``budget_mean_cost_dollars{tenant}``       gauge      realised mean cost per query
``savings_dollars_total``                  counter    estimated spend of always calling the
                                                      dearest model minus the measured spend
``breaker_open{model}``                    gauge      1 while the circuit breaker is open
=====================================  =========  ============================================

The OpenTelemetry span (``cascade_routing.request``) is created only when ``opentelemetry-api``
is installed; its attributes are the request id, tenant, answering model, cost and number of
calls — never the prompt or the answer.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "Savings", "Telemetry", "request_span"]

_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_COST = (1e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 1.0)

try:  # optional: a span per request when OpenTelemetry's API is installed
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the environment
    _otel_trace = None


@contextlib.contextmanager
def request_span(request_id: str) -> Iterator[Any]:
    """A span named ``cascade_routing.request`` (or nothing without opentelemetry-api)."""
    if _otel_trace is None:
        yield None
        return
    tracer = _otel_trace.get_tracer("cascade_routing.serve")
    with tracer.start_as_current_span("cascade_routing.request") as span:
        span.set_attribute("cascade_routing.request_id", request_id)
        yield span


class Savings:
    """Measured spend against always calling the most expensive model (an estimate: that model
    was not called, so its cost is its ex-ante cost estimate unless it did answer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.spent = 0.0
        self.always_dearest = 0.0

    def add(self, spent: float, dearest_cost: float) -> None:
        with self._lock:
            self.requests += 1
            self.spent += spent
            self.always_dearest += dearest_cost

    def report(self, dearest_model: str) -> dict[str, Any]:
        with self._lock:
            saved = self.always_dearest - self.spent
            return {
                "requests": self.requests,
                "spent_dollars": self.spent,
                "dearest_model": dearest_model,
                "always_dearest_dollars": self.always_dearest,
                "saved_dollars": saved,
                "saved_fraction": saved / self.always_dearest if self.always_dearest else 0.0,
            }


class Telemetry:
    """The gateway's metrics, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "cascade_routing_"
        self.decisions = Counter(
            p + "decisions",
            "Answered or failed requests",
            ["tenant", "model", "outcome"],
            registry=r,
        )
        self.calls = Counter(
            p + "upstream_calls", "Upstream calls by result", ["model", "status"], registry=r
        )
        self.failures = Counter(
            p + "upstream_failures", "Failed upstream calls", ["model", "kind"], registry=r
        )
        self.cost = Counter(p + "cost_dollars", "Measured spend", ["tenant", "model"], registry=r)
        self.request_cost = Histogram(
            p + "request_cost_dollars", "Total cost per request", buckets=_COST, registry=r
        )
        self.decision_seconds = Histogram(
            p + "decision_seconds",
            "Request time outside upstream calls",
            buckets=_FAST,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            p + "upstream_seconds", "Upstream call time", ["model"], buckets=_SLOW, registry=r
        )
        self.request_seconds = Histogram(
            p + "request_seconds", "End-to-end request time", buckets=_SLOW, registry=r
        )
        self.lam = Gauge(
            p + "lambda", "First-step cost multiplier in force", ["tenant"], registry=r
        )
        self.lam_scale = Gauge(
            p + "lambda_scale",
            "Budget controller scale of the multipliers",
            ["tenant"],
            registry=r,
        )
        self.mean_cost = Gauge(
            p + "budget_mean_cost_dollars", "Realised mean cost per query", ["tenant"], registry=r
        )
        self.saved = Counter(
            p + "savings_dollars",
            "Estimated saving against always calling the most expensive model",
            registry=r,
        )
        self.breaker_open = Gauge(
            p + "breaker_open", "1 while the circuit breaker is open", ["model"], registry=r
        )
        self.savings = Savings()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
