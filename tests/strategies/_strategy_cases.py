"""Shared data and estimators of the strategy tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade_routing.estimators import (
    ConstantCost,
    QualityEstimate,
    TwoPhaseCost,
    TwoPhaseQuality,
)
from cascade_routing.strategies import CascadeRouter


def synthetic(n: int, k: int, seed: int, noisy: bool = True):
    """Logged data with two-phase estimates of controlled quality."""
    rng = np.random.default_rng(seed)
    skill = np.linspace(0.35, 0.9, k)
    true_q = (rng.uniform(size=(n, k)) < skill).astype(float)
    true_c = np.abs(rng.normal(np.geomspace(1, 20, k), 0.3, size=(n, k))) * 1e-3
    ante = np.clip(0.5 * skill + 0.3 * true_q + rng.normal(0, 0.15, (n, k)), 0, 1)
    post = np.clip(0.15 + 0.7 * true_q + rng.normal(0, 0.1, (n, k)), 0, 1)
    var = np.full((n, k), 0.03) if noisy else None
    qe = TwoPhaseQuality(ante, post, var)
    ce = TwoPhaseCost(np.tile(true_c.mean(axis=0), (n, 1)), true_c)
    models = [f"model-{i}" for i in range(k)]
    queries = np.arange(n)
    answers = [[f"answer {i} {j}" for j in range(k)] for i in range(n)]
    return qe, ce, models, queries, answers, true_q, true_c


class Opaque:
    """Hides a table estimator's type, forcing the estimator replay."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, queries, answers):
        return self.inner.predict(queries, answers)


def same_replay(a, b) -> None:
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_array_equal(a.n_run, b.n_run)
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_allclose(a.cost, b.cost, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(a.quality, b.quality)


def random_states(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    return [[f"a{j}" if rng.uniform() < 0.3 else None for j in range(k)] for _ in range(n)]


class ScoreEstimator:
    """Live estimator: ex-ante prior per model; post-hoc from the answer's 'score' field."""

    def __init__(self, prior) -> None:
        self.prior = np.asarray(prior, dtype=float)
        self.calls = 0

    def predict(self, queries, answers):
        self.calls += 1
        out = np.tile(self.prior, (len(queries), 1))
        for i, row in enumerate(answers):
            for j, a in enumerate(row):
                if a is not None:
                    if not isinstance(a, dict) or "score" not in a:
                        raise ValueError(f"cannot read answer {a!r}")
                    out[i, j] = float(a["score"])
        missing = np.array([[a is None for a in r] for r in answers])
        return QualityEstimate(out, np.where(missing, 0.05, 1e-6))


MODELS = ["small", "medium", "large", "huge"]


def make_live(prior=(0.5, 0.6, 0.7, 0.9), costs=(1.0, 2.0, 3.0, 4.0), lam=0.01):
    strat = CascadeRouter(ScoreEstimator(prior), ConstantCost(costs), MODELS, order="given")
    return strat.set_lambdas(lam), list(MODELS)
