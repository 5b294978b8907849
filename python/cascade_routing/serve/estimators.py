"""Serve-time estimators built from the upstream configuration.

Both follow the estimator protocol of docs/estimators.md, ``predict(queries, answers)``, with
queries being :class:`~cascade_routing.serve.clients.ChatQuery` objects and answers
:class:`~cascade_routing.serve.clients.ServedAnswer` objects (or ``None`` before a model has
run). A learned estimator with the same protocol can replace either one.

:class:`ConfidencePriorQuality` (``estimator.kind: confidence_prior``)
    Before model ``m`` has run, its quality is its configured ``prior_quality`` with standard
    deviation ``prior_sd``. Once it has answered, the estimate moves towards the answer's
    confidence: ``weight × p + (1 − weight) × prior_quality`` with standard deviation
    ``post_sd``, where ``p = exp(mean token log-probability)`` (the geometric mean
    probability of the output tokens; 1 for an empty answer). An answer without
    log-probabilities keeps the prior mean, with ``post_sd``. The priors would typically be
    each model's accuracy on logged traffic.

:class:`TokenPriceCost`
    Ex ante: ``prompt tokens × price_in + expected output tokens × price_out``, the prompt
    tokens estimated as ``ceil(characters / 4) + 4`` per message and the expected output
    tokens as ``min(max_tokens, expected_output_tokens)``. Post hoc: the measured cost of the
    answer (its ``usage`` × price), or the ex-ante figure if the reply had no usage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..estimators import QualityEstimate
from .config import ServeConfig

__all__ = ["ConfidencePriorQuality", "TokenPriceCost", "estimators_from_config"]


def _token_probability(answer: Any) -> float | None:
    logprobs = getattr(answer, "logprobs", None)
    if logprobs is None:
        return None
    if len(logprobs) == 0:
        return 1.0
    return math.exp(math.fsum(logprobs) / len(logprobs))


class ConfidencePriorQuality:
    """Configured priors, moved towards the answer's token probability once it exists."""

    def __init__(
        self, priors: Sequence[float], prior_sd: Sequence[float], *, weight: float, post_sd: float
    ) -> None:
        self.priors = np.asarray(priors, dtype=np.float64)
        self.prior_var = np.asarray(prior_sd, dtype=np.float64) ** 2
        if self.priors.ndim != 1 or self.priors.shape != self.prior_var.shape:
            raise ValueError("priors and prior_sd must be 1-D and of the same length")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        self.weight = float(weight)
        self.post_var = float(post_sd) ** 2

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> QualityEstimate:
        n = len(queries)
        mean = np.tile(self.priors, (n, 1))
        var = np.tile(self.prior_var, (n, 1))
        for i, row in enumerate(answers):
            for j, a in enumerate(row):
                if a is None:
                    continue
                var[i, j] = self.post_var
                p = _token_probability(a)
                if p is not None:
                    mean[i, j] = self.weight * p + (1.0 - self.weight) * self.priors[j]
        return QualityEstimate(mean, var)


class TokenPriceCost:
    """Prompt size × price ex ante; the measured cost post hoc."""

    def __init__(
        self,
        price_in: Sequence[float],
        price_out: Sequence[float],
        expected_output_tokens: Sequence[int],
    ) -> None:
        self.price_in = np.asarray(price_in, dtype=np.float64)
        self.price_out = np.asarray(price_out, dtype=np.float64)
        self.out_tokens = np.asarray(expected_output_tokens, dtype=np.float64)

    def ante(self, query: Any) -> NDArray[np.float64]:
        """Ex-ante cost of each model on ``query``."""
        tokens = float(getattr(query, "prompt_tokens_estimate", 0))
        params = getattr(query, "params", {}) or {}
        limit = params.get("max_completion_tokens", params.get("max_tokens"))
        out = self.out_tokens
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            out = np.minimum(out, float(limit))
        return tokens * self.price_in + out * self.price_out

    def predict(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> NDArray[np.float64]:
        out = np.empty((len(queries), self.price_in.shape[0]))
        for i, (q, row) in enumerate(zip(queries, answers)):
            out[i] = self.ante(q)
            for j, a in enumerate(row):
                cost = getattr(a, "cost", None) if a is not None else None
                if cost is not None:
                    out[i, j] = cost
        return out


def estimators_from_config(
    config: ServeConfig, models: Sequence[str] | None = None
) -> tuple[ConfidencePriorQuality, TokenPriceCost]:
    """The quality and cost estimators declared by ``config``, columns in the order of
    ``models`` (default: the order of the config)."""
    m = [config.upstream(name) for name in (models or config.model_names)]
    quality = ConfidencePriorQuality(
        [u.prior_quality for u in m],
        [u.prior_sd for u in m],
        weight=config.estimator.weight,
        post_sd=config.estimator.post_sd,
    )
    cost = TokenPriceCost(
        [u.price_in for u in m], [u.price_out for u in m], [u.expected_output_tokens for u in m]
    )
    return quality, cost
