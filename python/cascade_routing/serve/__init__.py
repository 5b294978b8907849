"""Serving: OpenAI-compatible clients, a gateway, online budget control and telemetry.

Needs the ``[serve]`` extra (httpx, starlette, uvicorn, prometheus-client, PyYAML). Nothing
here is imported by ``cascade_routing`` itself.

- :mod:`.config`: the upstream configuration file, validated at load time.
- :mod:`.clients`: :class:`OpenAIUpstreams` with ``call_model`` / ``acall_model``.
- :mod:`.estimators`: serve-time quality and cost estimators built from the config.
- :mod:`.gateway`: the Starlette app (``python -m cascade_routing.serve``).
- :mod:`.budget`: the online budget controller and per-tenant budgets.
- :mod:`.telemetry`: Prometheus metrics, OpenTelemetry spans, the savings report.
- :mod:`.drift`: the drift simulation of the budget controller.
"""

from __future__ import annotations

from .budget import BudgetController, TenantBudgets
from .clients import ChatQuery, CircuitBreaker, OpenAIUpstreams, ServedAnswer, UpstreamError
from .config import ConfigError, ServeConfig, load_config, parse_config
from .estimators import ConfidencePriorQuality, TokenPriceCost, estimators_from_config
from .gateway import Gateway, build_gateway

__all__ = [
    "BudgetController",
    "ChatQuery",
    "CircuitBreaker",
    "ConfidencePriorQuality",
    "ConfigError",
    "Gateway",
    "OpenAIUpstreams",
    "ServeConfig",
    "ServedAnswer",
    "TenantBudgets",
    "TokenPriceCost",
    "UpstreamError",
    "build_gateway",
    "estimators_from_config",
    "load_config",
    "parse_config",
]
