"""Fitting λ and γ: routing reaches the LP optimum, budgets are met, per-step search."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from _strategy_cases import synthetic
from scipy.optimize import linprog

from cascade_routing.estimators import TwoPhaseCost, TwoPhaseQuality
from cascade_routing.strategies import (
    Cascade,
    CascadeRouter,
    Router,
    ThresholdCascade,
    query_coin,
)
from cascade_routing.strategies.fitting import fit_multiplier_scale, with_tolerance
from cascade_routing.strategies.replay import ReplayResult


def lp_optimum(q: np.ndarray, c: np.ndarray, budget: float) -> float:
    """max mean quality s.t. mean cost <= budget over randomised per-query model choices."""
    n, k = q.shape
    res = linprog(
        -q.ravel() / n,
        A_ub=(c.ravel() / n)[None, :],
        b_ub=[budget],
        A_eq=np.kron(np.eye(n), np.ones((1, k))),
        b_eq=np.ones(n),
        bounds=(0, None),
        method="highs",
    )
    assert res.status == 0
    return -res.fun


@pytest.mark.parametrize("seed", range(6))
def test_router_reaches_the_linear_program_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 60, 4
    q = rng.uniform(size=(n, k))
    c = rng.uniform(0.1, 1.0, size=(n, k))
    qe = TwoPhaseQuality(q, q)
    ce = TwoPhaseCost(c, c)
    cheapest = c.min(axis=1).mean()
    dearest = c[np.arange(n), q.argmax(axis=1)].mean()
    for frac in (0.1, 0.35, 0.6, 0.9):
        budget = cheapest + frac * (dearest - cheapest)
        router = Router(qe, ce, list("abcd")).fit(
            np.arange(n), [list("wxyz")] * n, q, c, budget=budget
        )
        info = router.fit_info_
        assert info["status"] == "ok"
        assert abs(info["expected_cost"] - budget) < 1e-6
        assert abs(info["expected_quality"] - lp_optimum(q, c, budget)) < 1e-6


def test_budget_outside_the_achievable_range_is_a_status_not_a_warning(caplog) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(200, 3, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.DEBUG, logger="cascade_routing"):
            low = Router(qe, ce, models).fit(queries, answers, q, c, budget=0.0)
            high = Router(qe, ce, models).fit(queries, answers, q, c, budget=10.0)
    assert low.fit_info_["status"] == "budget_below_cheapest"
    assert high.fit_info_["status"] == "budget_above_dearest"
    assert high.fit_info_["expected_cost"] < 10.0
    outside = [
        r
        for r in caplog.records
        if "below the cheapest" in r.getMessage() or "above the dearest" in r.getMessage()
    ]
    assert len(outside) == 2 and all(r.levelno == logging.DEBUG for r in outside)


@pytest.mark.parametrize("cls", [Router, Cascade, CascadeRouter, ThresholdCascade])
def test_fit_meets_the_budget_in_expectation(cls) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(500, 4, 1)
    budget = 0.6 * c.mean(axis=0).sum() / 4
    strat = cls(qe, ce, models).fit(queries, answers, q, c, budget=budget)
    assert strat.fit_info_["status"] == "ok"
    assert abs(strat.fit_info_["expected_cost"] - budget) < 1e-6 * max(1.0, budget)
    res_cheap = strat.fit_info_["cost_cheap"]
    res_exp = strat.fit_info_["cost_expensive"]
    assert res_cheap <= budget + 1e-12 <= res_exp + 2e-12


def test_per_step_lambdas_do_not_lose_to_constant() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(400, 4, 8)
    budget = float(c.mean(axis=0)[:2].mean())
    const = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=budget)
    per = CascadeRouter(qe, ce, models).fit(
        queries, answers, q, c, budget=budget, lambdas="per_step", n_trials=40, seed=1
    )
    assert per.fit_info_["expected_quality"] >= const.fit_info_["expected_quality"] - 1e-12
    assert abs(per.fit_info_["expected_cost"] - budget) < 1e-6
    again = CascadeRouter(qe, ce, models).fit(
        queries, answers, q, c, budget=budget, lambdas="per_step", n_trials=40, seed=1
    )
    np.testing.assert_array_equal(per.lambdas_, again.lambdas_)


def test_fit_reports_progress() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(100, 3, 9)
    calls = []
    Router(qe, ce, models).fit(
        queries, answers, q, c, budget=0.003, progress=lambda d, t: calls.append((d, t))
    )
    assert calls and all(d <= t for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    with pytest.raises(TypeError, match="progress"):
        Router(qe, ce, models).fit(queries, answers, q, c, budget=0.003, progress=3)


def _result(cost: float, quality: float) -> ReplayResult:
    return ReplayResult(
        np.zeros(1, np.int64),
        np.ones(1, np.int64),
        np.zeros((1, 1), np.int64),
        np.array([cost]),
        np.array([quality]),
    )


def test_the_scale_is_the_smallest_that_meets_the_budget_and_gamma_mixes() -> None:
    # A policy whose mean cost is 1 / (1 + s) at scale s: budget 0.25 needs s = 3 exactly.
    def evaluate(lam, expensive):
        s = float(lam[0])
        return _result(1.0 / (1.0 + s), 1.0 - s / 10)

    fit = fit_multiplier_scale(evaluate, np.ones(1), 0.25, 60)
    assert fit.status == "ok"
    assert fit.lambdas[0] == pytest.approx(3.0, rel=1e-9)
    assert fit.cheap.mean_cost <= with_tolerance(0.25)
    mixed = (1 - fit.gamma) * fit.cheap.mean_cost + fit.gamma * fit.expensive.mean_cost
    assert mixed == pytest.approx(0.25, abs=1e-12)


def test_query_coin_is_stable_and_uniform() -> None:
    coins = np.array([query_coin(i, 3) for i in range(4000)])
    assert query_coin(5, 3) == query_coin(np.int64(5), 3)
    assert query_coin("q", 1) != query_coin("q", 2)
    assert abs(coins.mean() - 0.5) < 0.03 and coins.min() >= 0 and coins.max() < 1
