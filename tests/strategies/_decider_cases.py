"""Strategies and estimators for the prepared-decider tests (shared with test_c_api.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade_routing.estimators import QualityEstimate
from cascade_routing.strategies import Cascade, CascadeRouter, Router, Strategy
from cascade_routing.strategies.decider import mask_of


def _psd(rng: np.random.Generator, k: int) -> np.ndarray:
    a = rng.normal(0.0, 0.15, (k, k))
    cov = a @ a.T
    if rng.random() < 0.3:  # a semi-definite one: an exact model and a duplicate
        cov[0, :] = cov[:, 0] = 0.0
    return (cov + cov.T) / 2


class RunSetEstimator:
    """Means per (query, run-set) from a hash; uncertainty per run-set only (the protocol)."""

    def __init__(self, k: int, seed: int, kind: str, mean_only: bool = True) -> None:
        self.k, self.seed, self.kind = k, seed, kind
        self._cache: dict[bytes, np.ndarray] = {}
        self.calls = 0
        if mean_only:
            self.predict_mean = self._means

    def uncertainty(self, ran: np.ndarray) -> np.ndarray:
        key = np.asarray(ran, dtype=bool).tobytes()
        if key not in self._cache:
            self.calls += 1
            rng = np.random.default_rng([self.seed, int.from_bytes(key, "little") % 2**32])
            cov = _psd(rng, self.k)
            self._cache[key] = np.diag(cov).copy() if self.kind == "var" else cov
        return self._cache[key]

    def _means(self, queries: Any, answers: Any) -> np.ndarray:
        out = np.empty((len(queries), self.k))
        for i, (q, row) in enumerate(zip(queries, answers)):
            ran = [a is not None for a in row]
            rng = np.random.default_rng([self.seed, int(q), mask_of(ran)])
            out[i] = rng.uniform(0.1, 0.9, self.k)
        return out

    def predict(self, queries: Any, answers: Any) -> QualityEstimate:
        mean = self._means(queries, answers)
        unc = np.stack([self.uncertainty(np.array([a is not None for a in r])) for r in answers])
        if self.kind == "var":
            return QualityEstimate(mean, var=unc)
        return QualityEstimate(mean, cov=unc)


class ExactEstimator(RunSetEstimator):
    """Means only: the decider runs with exact means (no table)."""

    def __init__(self, k: int, seed: int) -> None:
        super().__init__(k, seed, "cov", mean_only=False)

    uncertainty = None  # type: ignore[assignment]

    def predict(self, queries: Any, answers: Any) -> np.ndarray:
        return self._means(queries, answers)


class RandomCost:
    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seed = k, seed

    def predict(self, queries: Any, answers: Any) -> np.ndarray:
        out = np.empty((len(queries), self.k))
        for i, q in enumerate(queries):
            out[i] = np.random.default_rng([self.seed, 7, int(q)]).uniform(0.0, 1.0, self.k)
        return out


def _strategy(rng: np.random.Generator, k: int, kind: str) -> Strategy:
    est: Any = ExactEstimator(k, int(rng.integers(1 << 30))) if kind == "exact" else None
    if est is None:
        est = RunSetEstimator(k, int(rng.integers(1 << 30)), "var" if kind == "var" else "cov")
    ce = RandomCost(k, int(rng.integers(1 << 30)))
    models = [f"m{i}" for i in range(k)]
    order = [models[i] for i in rng.permutation(k)]
    bounds = (0.0, 1.0) if rng.random() < 0.3 else None
    cls = rng.choice(["router", "cascade", "cascade_router"])
    common = {"order": order, "quality_bounds": bounds, "n_samples": int(rng.choice([8, 32]))}
    s: Strategy
    if cls == "router":
        s = Router(est, ce, models, **common)
    elif cls == "cascade":
        s = Cascade(est, ce, models, max_depth=int(rng.integers(1, k + 1)), **common)
    else:
        depth = None if rng.random() < 0.5 else int(rng.integers(1, k + 1))
        s = CascadeRouter(
            est, ce, models, max_depth=depth, force_order=bool(rng.random() < 0.3), **common
        )
    steps = s.n_steps()
    n_lam = int(rng.integers(1, steps + 1))
    lam = rng.uniform(0.0, 0.5, n_lam)
    # γ in (0, 1): the coin picks both policies; the expensive one has other multipliers.
    s.set_lambdas(lam, lambdas_expensive=lam * rng.uniform(0.5, 1.0, n_lam), gamma=0.5)
    s.prepare()
    return s


def _answers(rng: np.random.Generator, s: Strategy) -> list[Any]:
    k = len(s.models)
    n_run = int(rng.integers(0, k + 1))
    if s.prefixes_only:
        run = [int(i) for i in s.order_[:n_run]]
    else:
        run = [int(i) for i in rng.choice(k, n_run, replace=False)]
    return [f"a{j}" if j in run else None for j in range(k)]
