"""Strategies: optimality of routing, equivalences, replay engines, the loop, persistence."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from scipy.optimize import linprog

import cascade_routing as cr
from cascade_routing.estimators import (
    ConstantCost,
    DefaultUncertainty,
    QualityEstimate,
    TwoPhaseCost,
    TwoPhaseQuality,
)
from cascade_routing.strategies import (
    AllModelsFailedError,
    Cascade,
    CascadeRouter,
    Router,
    Strategy,
    ThresholdCascade,
    query_coin,
)


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
    """Hides a table estimator's type, forcing the generic cached replay."""

    def __init__(self, inner):
        self.inner = inner

    def predict(self, queries, answers):
        return self.inner.predict(queries, answers)


def same_replay(a, b) -> None:
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_array_equal(a.n_run, b.n_run)
    np.testing.assert_array_equal(a.order, b.order)
    np.testing.assert_allclose(a.cost, b.cost, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(a.quality, b.quality)


# --------------------------------------------------------------------------- routing is optimal


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


def test_router_budget_outside_the_achievable_range_is_reported() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(200, 3, 0)
    low = Router(qe, ce, models).fit(queries, answers, q, c, budget=0.0)
    assert low.fit_info_["status"] == "budget_below_cheapest"
    high = Router(qe, ce, models).fit(queries, answers, q, c, budget=10.0)
    assert high.fit_info_["status"] == "budget_above_dearest"
    assert high.fit_info_["expected_cost"] < 10.0


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


# --------------------------------------------------------------------------- equivalences


def random_states(n: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    return [[f"a{j}" if rng.uniform() < 0.3 else None for j in range(k)] for _ in range(n)]


@pytest.mark.parametrize("noisy", [True, False])
def test_cascade_router_with_depth_one_is_routing(noisy: bool) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 5, 3, noisy)
    for lam in (0.0, 5.0, 40.0, 300.0):
        router = Router(qe, ce, models, order="given").set_lambdas(lam)
        cr1 = CascadeRouter(qe, ce, models, order="given", max_depth=1).set_lambdas(lam)
        for i in queries:
            assert router.next_model(i, [None] * 5) == cr1.next_model(i, [None] * 5)
        same_replay(router.replay(queries, answers, q, c), cr1.replay(queries, answers, q, c))


@pytest.mark.parametrize("noisy", [True, False])
def test_cascade_router_on_prefixes_is_the_optimal_cascade(noisy: bool) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 5, 4, noisy)
    for lam in (0.0, 5.0, 40.0, 300.0):
        cascade = Cascade(qe, ce, models, order="given").set_lambdas(lam)
        prefix = CascadeRouter(qe, ce, models, order="given", prefixes_only=True).set_lambdas(lam)
        for i in queries[:100]:
            for j in range(5):
                state = [f"a{m}" if m < j else None for m in range(5)]
                assert cascade.next_model(i, state) == prefix.next_model(i, state)
        same_replay(cascade.replay(queries, answers, q, c), prefix.replay(queries, answers, q, c))


# --------------------------------------------------------------------------- replay engines


@pytest.mark.parametrize("cls", [Router, ThresholdCascade, Cascade, CascadeRouter])
@pytest.mark.parametrize("noisy", [True, False])
def test_compiled_cached_and_python_replays_agree(cls, noisy: bool) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(250, 4, 5, noisy)
    strat = cls(qe, ce, models).fit(queries, answers, q, c, budget=float(c.mean()) * 0.5)
    assert strat.fit_info_["replay_engine"] == "compiled"
    compiled = strat.replay(queries, answers, q, c)
    python = strat.replay(queries, answers, q, c, engine="python")
    opaque = cls(Opaque(qe), Opaque(ce), models, order=list(strat.model_order))
    opaque.set_lambdas(strat.lambdas_, lambdas_expensive=strat.lambdas_expensive_, gamma=strat.gamma_)
    cached = opaque.replay(queries, answers, q, c)
    same_replay(compiled, python)
    same_replay(compiled, cached)


def test_replay_agrees_across_backends() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 5, 6)
    results = []
    for name in cr.available_backends():
        with cr.use_backend(name):
            strat = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=0.004)
            results.append((strat.lambdas_.copy(), strat.replay(queries, answers, q, c)))
    for lam, res in results[1:]:
        np.testing.assert_array_equal(lam, results[0][0])
        same_replay(res, results[0][1])


def test_generic_estimator_with_default_uncertainty_fits_and_replays() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(200, 4, 7, noisy=False)

    class MeansOnly:
        def predict(self, queries, answers):
            return qe.predict(queries, answers).mean

    unc = DefaultUncertainty(MeansOnly()).fit(list(queries), answers)
    cov = unc.uncertainty(np.zeros(4, dtype=bool))
    assert cov.shape == (4, 4) and np.all(np.linalg.eigvalsh(cov) > -1e-12)
    np.testing.assert_allclose(unc.uncertainty(np.ones(4, dtype=bool)), 0.0, atol=1e-15)
    strat = CascadeRouter(unc, ConstantCost.from_training(c), models)
    strat.fit(list(queries), answers, q, c, budget=float(c.mean()) * 0.4)
    assert strat.fit_info_["replay_engine"] == "cached"
    same_replay(
        strat.replay(list(queries), answers, q, c),
        strat.replay(list(queries), answers, q, c, engine="python"),
    )


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
    Router(qe, ce, models).fit(queries, answers, q, c, budget=0.003, progress=lambda d, t: calls.append((d, t)))
    assert calls and all(d <= t for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_query_coin_is_stable_and_uniform() -> None:
    coins = np.array([query_coin(i, 3) for i in range(4000)])
    assert query_coin(5, 3) == query_coin(np.int64(5), 3)
    assert query_coin("q", 1) != query_coin("q", 2)
    assert abs(coins.mean() - 0.5) < 0.03 and coins.min() >= 0 and coins.max() < 1


# --------------------------------------------------------------------------- the loop


class ScoreEstimator:
    """Live estimator: ex-ante prior per model; post-hoc from the answer's 'score' field."""

    def __init__(self, prior):
        self.prior = np.asarray(prior, dtype=float)

    def predict(self, queries, answers):
        out = np.tile(self.prior, (len(queries), 1))
        for i, row in enumerate(answers):
            for j, a in enumerate(row):
                if a is not None:
                    if not isinstance(a, dict) or "score" not in a:
                        raise ValueError(f"cannot read answer {a!r}")
                    out[i, j] = float(a["score"])
        return QualityEstimate(out, np.where([[a is None for a in r] for r in answers], 0.05, 1e-6))


def make_live(prior=(0.5, 0.6, 0.7, 0.9), costs=(1.0, 2.0, 3.0, 4.0), lam=0.01):
    models = ["small", "medium", "large", "huge"]
    strat = CascadeRouter(ScoreEstimator(prior), ConstantCost(costs), models, order="given")
    return strat.set_lambdas(lam), models


def test_run_records_every_step_and_returns_the_best_answer() -> None:
    strat, models = make_live()
    calls = []

    def call(name, query):
        calls.append(name)
        return {"score": 0.95 if name == "medium" else 0.2, "text": name}, 1.5

    result = strat.run("q1", call)
    assert result.trace[-1].status == "stop"
    assert [s.model for s in result.trace[:-1]] == calls
    assert result.model == "medium" and result.answer["text"] == "medium"
    assert result.cost == pytest.approx(1.5 * len(calls))
    assert all(s.actual_cost == 1.5 for s in result.trace[:-1])


def test_run_survives_failing_hanging_and_garbage_models() -> None:
    strat, models = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)

    def call(name, query):
        if name == "huge":
            raise ConnectionError("provider down")
        if name == "large":
            time.sleep(1.0)
            return {"score": 1.0}
        if name == "medium":
            return "<garbage>"  # the estimator cannot read it
        if name == "small":
            return {"score": 0.4}, float("nan")  # an invalid cost
        raise AssertionError(name)

    with pytest.raises(AllModelsFailedError) as info:
        strat.run("q", call, timeout=0.2)
    statuses = {s.model: s.status for s in info.value.trace if s.model}
    assert statuses == {"huge": "failed", "large": "timeout", "medium": "invalid", "small": "invalid"}

    def call_ok_small(name, query):
        if name == "small":
            return {"score": 0.4}
        return call(name, query)

    result = strat.run("q", call_ok_small, timeout=0.2)
    assert result.model == "small"
    assert set(result.failed) == {"huge", "large", "medium"}
    assert "provider down" in result.failed["huge"]
    assert [s.status for s in result.trace][-1] == "stop"


def test_arun_matches_run_and_handles_async_timeouts() -> None:
    strat, models = make_live()

    async def call(name, query):
        if name == "medium":
            await asyncio.sleep(1.0)
        return {"score": 0.8 if name == "large" else 0.3}

    def sync_call(name, query):
        if name == "medium":
            raise TimeoutError
        return {"score": 0.8 if name == "large" else 0.3}

    result = asyncio.run(strat.arun("q", call, timeout=0.1))
    statuses = [(s.model, s.status) for s in result.trace]
    assert ("medium", "timeout") in statuses
    reference = strat.run("q", sync_call)
    assert [s.model for s in reference.trace] == [s.model for s in result.trace]
    assert result.model == reference.model == "large"


def test_select_and_next_model_interface() -> None:
    strat, models = make_live()
    assert strat.select("q", [None] * 4) is None
    assert strat.select("q", [{"score": 0.3}, {"score": 0.8}, None, None]) == "medium"
    assert strat.next_model("q", [None] * 4) in models
    assert strat.next_models(["a", "b"], [[None] * 4, [None] * 4]) == [
        strat.next_model("a", [None] * 4),
        strat.next_model("b", [None] * 4),
    ]
    thr = ThresholdCascade(ScoreEstimator((0.5,) * 4), ConstantCost((1, 2, 3, 4)), models, order="given")
    thr.set_lambdas(0.3)  # continue while the last score is below 0.7
    assert thr.next_model("q", [None] * 4) == "small"
    assert thr.next_model("q", [{"score": 0.5}, None, None, None]) == "medium"
    assert thr.next_model("q", [{"score": 0.9}, None, None, None]) is None
    assert thr.select("q", [{"score": 0.9}, {"score": 0.1}, None, None]) == "medium"


# --------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("cls", [Router, ThresholdCascade, Cascade, CascadeRouter])
def test_save_load_round_trip_gives_identical_decisions(cls, tmp_path) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 4, 10)
    strat = cls(qe, ce, models).fit(queries, answers, q, c, budget=float(c.mean()) * 0.5)
    path = tmp_path / "policy.json"
    strat.save(path)
    loaded = Strategy.load(path, qe, ce, models=models)
    assert type(loaded) is cls
    assert loaded.model_order == strat.model_order
    same_replay(strat.replay(queries, answers, q, c), loaded.replay(queries, answers, q, c))
    assert cls.load(path, qe, ce).gamma_ == strat.gamma_


def test_load_rejects_corrupted_and_mismatched_files(tmp_path) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(100, 3, 11)
    strat = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=0.003)
    path = tmp_path / "p.json"
    strat.save(path)
    data = json.loads(path.read_text())

    def write(obj) -> None:
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj))

    with pytest.raises(ValueError, match="fitted for models"):
        Strategy.load(path, qe, ce, models=["x", "y", "z"])
    with pytest.raises(ValueError, match="not a Router"):
        Router.load(path, qe, ce)
    write(path.read_text()[:50])
    with pytest.raises(ValueError, match="not a readable policy"):
        Strategy.load(path, qe, ce)
    write({**data, "schema_version": 99})
    with pytest.raises(ValueError, match="schema version 99"):
        Strategy.load(path, qe, ce)
    write({k: v for k, v in data.items() if k != "lambdas"})
    with pytest.raises(ValueError, match="corrupted"):
        Strategy.load(path, qe, ce)
    write({**data, "lambdas": [-1.0]})
    with pytest.raises(ValueError, match="corrupted"):
        Strategy.load(path, qe, ce)
    write({**data, "format": "other"})
    with pytest.raises(ValueError, match="not a cascade-routing policy"):
        Strategy.load(path, qe, ce)
    with pytest.raises(FileNotFoundError):
        Strategy.load(tmp_path / "missing.json", qe, ce)


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_rejected_with_the_culprit_named() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(50, 3, 12)
    strat = CascadeRouter(qe, ce, models)
    with pytest.raises(ValueError, match="answers has 49 rows"):
        strat.fit(queries, answers[:49], q, c, budget=0.01)
    with pytest.raises(ValueError, match=r"answers\[0\] has 2 entries"):
        strat.fit(queries, [row[:2] for row in answers], q, c, budget=0.01)
    with pytest.raises(ValueError, match="missing answer"):
        strat.fit(queries, [[None] * 3] * 50, q, c, budget=0.01)
    with pytest.raises(ValueError, match="quality must have shape"):
        strat.fit(queries, answers, q[:10], c, budget=0.01)
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="quality contains NaN"):
        strat.fit(queries, answers, bad, c, budget=0.01)
    with pytest.raises(ValueError, match="budget must be"):
        strat.fit(queries, answers, q, c, budget=-1.0)
    with pytest.raises(TypeError, match="budget must be a number"):
        strat.fit(queries, answers, q, c, budget="cheap")
    with pytest.raises(ValueError, match="lambdas must be"):
        strat.fit(queries, answers, q, c, budget=0.01, lambdas="sometimes")
    with pytest.raises(ValueError, match="unknown models"):
        CascadeRouter(qe, ce, models, order=["model-0", "model-1", "nope"])
    with pytest.raises(ValueError, match="duplicates"):
        CascadeRouter(qe, ce, ["a", "a", "b"])
    with pytest.raises(RuntimeError, match="call fit"):
        strat.next_model(0, [None] * 3)

    class WrongShape:
        def predict(self, queries, answers):
            return np.zeros((len(queries), 2))

    broken = CascadeRouter(WrongShape(), ce, models).set_lambdas(1.0)
    with pytest.raises(ValueError, match=r"quality estimator returned means of shape \(1, 2\)"):
        broken.next_model(0, [None] * 3)

    class NegativeCost:
        def predict(self, queries, answers):
            return -np.ones((len(queries), 3))

    with pytest.raises(ValueError, match="cost estimator returned negative"):
        CascadeRouter(qe, NegativeCost(), models).set_lambdas(1.0).next_model(0, [None] * 3)


def test_decisions_are_thread_safe() -> None:
    from concurrent.futures import ThreadPoolExecutor

    qe, ce, models, queries, answers, q, c = synthetic(400, 5, 13)
    strat = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=float(c.mean()) * 0.4)
    states = random_states(400, 5, 14)
    expected = [strat.next_model(i, s) for i, s in zip(queries, states)]
    expected_replay = strat.replay(queries, answers, q, c)

    def decide(chunk: int):
        rows = range(chunk, 400, 8)
        return chunk, [strat.next_model(int(i), states[i]) for i in rows], strat.replay(queries, answers, q, c, n_threads=2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for chunk, got, rep in pool.map(decide, range(8)):
            assert got == [expected[i] for i in range(chunk, 400, 8)]
            same_replay(rep, expected_replay)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-np.inf, 0.9)])
def test_quality_bounds_reach_every_decision_path(bounds, tmp_path) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(250, 4, 15)
    strat = CascadeRouter(qe, ce, models, quality_bounds=bounds).fit(
        queries, answers, q, c, budget=float(c.mean()) * 0.5
    )
    compiled = strat.replay(queries, answers, q, c)
    same_replay(compiled, strat.replay(queries, answers, q, c, engine="python"))
    opaque = CascadeRouter(Opaque(qe), Opaque(ce), models, order=list(strat.model_order), quality_bounds=bounds)
    opaque.set_lambdas(strat.lambdas_, lambdas_expensive=strat.lambdas_expensive_, gamma=strat.gamma_)
    same_replay(compiled, opaque.replay(queries, answers, q, c))
    path = tmp_path / "bounded.json"
    strat.save(path)
    loaded = Strategy.load(path, qe, ce)
    assert loaded.quality_bounds == (float(bounds[0]), float(bounds[1]))
    same_replay(compiled, loaded.replay(queries, answers, q, c))
    # The bounds change decisions: the same multipliers without them decide differently.
    unbounded = CascadeRouter(qe, ce, models, order=list(strat.model_order))
    unbounded.set_lambdas(strat.lambdas_, lambdas_expensive=strat.lambdas_expensive_, gamma=strat.gamma_)
    assert not np.array_equal(unbounded.replay(queries, answers, q, c).order, compiled.order)


def test_quality_bounds_are_validated() -> None:
    qe, ce, models, *_ = synthetic(10, 3, 16)
    with pytest.raises(ValueError, match="quality_bounds"):
        CascadeRouter(qe, ce, models, quality_bounds=(1.0, 0.0))
    with pytest.raises(TypeError, match="quality_bounds"):
        CascadeRouter(qe, ce, models, quality_bounds="0,1")
