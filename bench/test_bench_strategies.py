"""Fitting and decision-overhead benchmarks of the strategies (issue targets in the docstrings).

Run: ``pytest bench/test_bench_strategies.py --benchmark-only``; CI runs the same file with
``--benchmark-disable`` so that it cannot rot. Ratios are against baselines measured in the
same run.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import cascade_routing as cr
from _workloads import median_seconds
from cascade_routing.estimators import TwoPhaseCost, TwoPhaseQuality
from cascade_routing.strategies import CascadeRouter

N_TRAIN = 10_000
K = 5


def training_data(n: int = N_TRAIN, k: int = K, seed: int = 0):
    rng = np.random.default_rng(seed)
    skill = np.linspace(0.4, 0.9, k)
    q = (rng.uniform(size=(n, k)) < skill).astype(float)
    c = np.abs(rng.normal(np.geomspace(1, 30, k), 0.2, size=(n, k))) * 1e-4
    ante = np.clip(0.5 * skill + 0.3 * q + rng.normal(0, 0.15, (n, k)), 0, 1)
    post = np.clip(0.15 + 0.7 * q + rng.normal(0, 0.1, (n, k)), 0, 1)
    qe = TwoPhaseQuality(ante, post, np.full((n, k), 0.03))
    ce = TwoPhaseCost(np.tile(c.mean(axis=0), (n, 1)), c)
    models = [f"m{i}" for i in range(k)]
    answers = [["."] * k] * n
    return qe, ce, models, np.arange(n), answers, q, c


@pytest.fixture(scope="module")
def data():
    return training_data()


@pytest.fixture(autouse=True, scope="module")
def compiled_backend():
    with cr.use_backend("cpp"):
        yield


def budget_of(c: np.ndarray) -> float:
    return float(c.mean(axis=0)[1:3].mean())


def test_fit_constant_lambda_10k_queries(benchmark, data) -> None:
    """Target: at most 2 s for k=5, max_depth=5, 30 bisection steps, 10,000 queries."""
    qe, ce, models, queries, answers, q, c = data

    def fit():
        return CascadeRouter(qe, ce, models, max_depth=5).fit(
            queries, answers, q, c, budget=budget_of(c), n_iter=30, n_threads=1
        )

    strat = benchmark.pedantic(fit, rounds=3, iterations=1, warmup_rounds=1)
    assert strat.fit_info_["status"] == "ok"
    assert strat.fit_info_["replay_engine"] == "compiled"
    assert abs(strat.fit_info_["expected_cost"] - budget_of(c)) < 1e-9
    if benchmark.enabled:
        assert benchmark.stats.stats.median < 2.0


def test_compiled_replay_vs_plain_python_replay(benchmark, data) -> None:
    """Target: fitting at least 100x faster than it would be with a plain-Python replay.

    The plain-Python replay calls ``next_model`` per query and step (with the compiled
    search inside); it is timed on 300 queries and scaled to the fit's replays of all
    10,000. The per-replay ratio is recorded too (one thread each).
    """
    qe, ce, models, queries, answers, q, c = data
    strat = CascadeRouter(qe, ce, models, max_depth=5).fit(
        queries, answers, q, c, budget=budget_of(c), n_iter=30, n_threads=1
    )
    n_py = 300
    started = time.perf_counter()
    slow = strat.replay(queries[:n_py], answers[:n_py], q[:n_py], c[:n_py], engine="python")
    python_per_query = (time.perf_counter() - started) / n_py

    result = benchmark(strat.replay, queries, answers, q, c)
    np.testing.assert_array_equal(result.order[:n_py], slow.order)
    if benchmark.enabled:
        compiled_per_query = benchmark.stats.stats.median / N_TRAIN
        started = time.perf_counter()
        CascadeRouter(qe, ce, models, max_depth=5).fit(
            queries, answers, q, c, budget=budget_of(c), n_iter=30, n_threads=1
        )
        fit_seconds = time.perf_counter() - started
        python_fit_seconds = python_per_query * N_TRAIN * strat.fit_info_["replays"]
        benchmark.extra_info["python_us_per_query"] = python_per_query * 1e6
        benchmark.extra_info["compiled_us_per_query"] = compiled_per_query * 1e6
        benchmark.extra_info["replay_speedup"] = python_per_query / compiled_per_query
        benchmark.extra_info["fit_seconds"] = fit_seconds
        benchmark.extra_info["python_fit_seconds_estimated"] = python_fit_seconds
        benchmark.extra_info["fit_speedup"] = python_fit_seconds / fit_seconds
        assert python_fit_seconds / fit_seconds >= 100


def test_fit_per_step_lambdas_200_trials(benchmark, data) -> None:
    """Target: at most 30 s for 200 trials of the per-step search on the same data."""
    qe, ce, models, queries, answers, q, c = data

    def fit():
        return CascadeRouter(qe, ce, models, max_depth=5).fit(
            queries, answers, q, c, budget=budget_of(c), lambdas="per_step", n_trials=200, seed=0
        )

    strat = benchmark.pedantic(fit, rounds=1, iterations=1)
    assert abs(strat.fit_info_["expected_cost"] - budget_of(c)) < 1e-9
    if benchmark.enabled:
        assert benchmark.stats.stats.median < 30.0


def test_decision_overhead(benchmark, data) -> None:
    """Target: next_model (estimators excluded) at most 2x the core's single decision."""
    qe, ce, models, queries, answers, q, c = data
    lam = 1.0 / float(c.mean())

    class Precomputed:
        """An estimator that costs nothing: returns fixed arrays."""

        def __init__(self, value):
            self.value = value

        def predict(self, queries, answers):
            return self.value

    est = qe.predict([0], [[None] * K])
    cost = ce.predict([0], [[None] * K])
    strat = CascadeRouter(Precomputed(est), Precomputed(cost), models, order="given", max_depth=5)
    strat.set_lambdas(lam)
    state = [None] * K

    def core():
        return cr.search_supermodel(
            est.mean[0], cost[0], lam, var=est.var[0], force_order=False, max_depth=5
        )

    expected = core()
    assert expected.next_model is not None
    name = benchmark(strat.next_model, 0, state)
    assert name == models[expected.next_model]
    if benchmark.enabled:
        core_s = median_seconds(core)
        ratio = benchmark.stats.stats.median / core_s
        benchmark.extra_info["core_us"] = core_s * 1e6
        benchmark.extra_info["ratio_to_core"] = ratio
        assert ratio <= 2.0
