"""The replay engines: tables in the compiled kernel, any estimators step by step, and the
slow per-decision oracle agree; the estimator replay's memory follows the rows it reaches."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _strategy_cases import Opaque, same_replay, synthetic

import cascade_routing as cr
from cascade_routing.estimators import ConstantCost, DefaultUncertainty, QualityEstimate
from cascade_routing.strategies import (
    Cascade,
    CascadeRouter,
    EstimatorReplayer,
    Router,
    Strategy,
    TableReplayer,
    ThresholdCascade,
)
from cascade_routing.strategies.replay import make_replayer


@pytest.mark.parametrize("cls", [Router, ThresholdCascade, Cascade, CascadeRouter])
@pytest.mark.parametrize("noisy", [True, False])
def test_table_estimator_and_python_replays_agree(cls, noisy: bool, backend: str) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(250, 4, 5, noisy)
    strat = cls(qe, ce, models).fit(queries, answers, q, c, budget=float(c.mean()) * 0.5)
    assert strat.fit_info_["replay_engine"] == "compiled"
    compiled = strat.replay(queries, answers, q, c)
    python = strat.replay(queries, answers, q, c, engine="python")
    opaque = cls(Opaque(qe), Opaque(ce), models, order=list(strat.model_order))
    opaque.set_lambdas(
        strat.lambdas_, lambdas_expensive=strat.lambdas_expensive_, gamma=strat.gamma_
    )
    cached = opaque.replay(queries, answers, q, c)
    same_replay(compiled, python)
    same_replay(compiled, cached)


def test_table_replayer_copies_a_table_only_when_it_must() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(30, 3, 2)
    given = CascadeRouter(qe, ce, models, order="given")
    whole = make_replayer(given, queries, answers, q, c, 1)
    assert isinstance(whole, TableReplayer)
    # All rows in order, the given model order: the estimator's tables as they are.
    assert np.shares_memory(whole.tables.ante_quality, qe.ante_mean)
    assert np.shares_memory(whole.tables.true_quality, q)
    # A subset of rows in another model order: one copy each, with the right values.
    rows = np.array([3, 1, 7, 20])
    perm = np.array([2, 0, 1])
    other = CascadeRouter(qe, ce, models, order=[models[i] for i in perm])
    part = make_replayer(other, rows, [answers[i] for i in rows], q[rows], c[rows], 1)
    assert isinstance(part, TableReplayer)
    assert not np.shares_memory(part.tables.ante_quality, qe.ante_mean)
    assert np.array_equal(part.tables.ante_quality, qe.ante_mean[rows][:, perm])
    assert np.array_equal(part.tables.post_cost, ce.post[rows][:, perm])
    assert np.array_equal(part.tables.true_cost, c[rows][:, perm])
    # The means come first; the per-query result maps models back to the given order.
    res = part.replay(np.array([1e-3]), False)
    full = res.result()
    assert (res.mean_cost, res.mean_quality) == (full.mean_cost, full.mean_quality)
    ran = full.selected[full.selected >= 0]
    assert np.all(np.isin(ran, np.arange(3)))
    assert np.array_equal(full.quality, q[rows, np.maximum(full.selected, 0)] * (full.n_run > 0))


def test_the_right_replayer_is_chosen() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(20, 3, 1)
    strat = CascadeRouter(qe, ce, models)
    assert isinstance(make_replayer(strat, queries, answers, q, c, 1), TableReplayer)
    assert isinstance(
        make_replayer(strat, list(map(str, queries)), answers, q, c, 1), EstimatorReplayer
    )
    opaque = CascadeRouter(Opaque(qe), ce, models)
    assert isinstance(make_replayer(opaque, queries, answers, q, c, 1), EstimatorReplayer)
    with pytest.raises(ValueError, match="engine must be one of"):
        strat.set_lambdas(1.0).replay(queries, answers, q, c, engine="fast")


def test_replay_agrees_across_backends() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 5, 6)
    results = []
    for name in cr.available_backends():
        with cr.use_backend(name):
            strat = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=0.004)
            results.append((strat.lambdas_.copy(), strat.replay(queries, answers, q, c)))
    assert len(results) == 3 or len(cr.available_backends()) < 3
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


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-np.inf, 0.9)])
def test_quality_bounds_reach_every_decision_path(bounds, tmp_path) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(250, 4, 15)
    strat = CascadeRouter(qe, ce, models, quality_bounds=bounds).fit(
        queries, answers, q, c, budget=float(c.mean()) * 0.5
    )
    compiled = strat.replay(queries, answers, q, c)
    same_replay(compiled, strat.replay(queries, answers, q, c, engine="python"))
    opaque = CascadeRouter(
        Opaque(qe), Opaque(ce), models, order=list(strat.model_order), quality_bounds=bounds
    )
    lams = {"lambdas_expensive": strat.lambdas_expensive_, "gamma": strat.gamma_}
    opaque.set_lambdas(strat.lambdas_, **lams)
    same_replay(compiled, opaque.replay(queries, answers, q, c))
    path = tmp_path / "bounded.json"
    strat.save(path)
    loaded = Strategy.load(path, qe, ce, models=models)
    assert loaded.quality_bounds == (float(bounds[0]), float(bounds[1]))
    same_replay(compiled, loaded.replay(queries, answers, q, c))
    # The bounds change decisions: the same multipliers without them decide differently.
    unbounded = CascadeRouter(qe, ce, models, order=list(strat.model_order))
    unbounded.set_lambdas(strat.lambdas_, **lams)
    assert not np.array_equal(unbounded.replay(queries, answers, q, c).order, compiled.order)


class FullCovariance:
    """A non-table estimator returning a full covariance (the costly case of the replay)."""

    def __init__(self, n: int, k: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.ante = rng.uniform(0.2, 0.8, (n, k))
        self.post = rng.uniform(0.0, 1.0, (n, k))
        self.k = k

    def predict(self, queries, answers):
        rows = np.asarray(queries)
        ran = np.array([[a is not None for a in r] for r in answers])
        mean = np.where(ran, self.post[rows], self.ante[rows])
        var = np.where(ran, 1e-6, 0.02)
        free = ~ran
        cov = var[:, :, None] * np.eye(self.k)[None] + 0.001 * (
            free[:, :, None] & free[:, None, :]
        )
        return QualityEstimate(mean, cov=cov)


def test_estimator_replay_stores_only_the_rows_that_reach_each_run_set() -> None:
    n, k = 1000, 16
    est = FullCovariance(n, k)
    true_q = (np.random.default_rng(1).uniform(size=(n, k)) < 0.6).astype(float)
    true_c = np.tile(np.geomspace(1, 20, k) * 1e-3, (n, 1))
    strat = CascadeRouter(
        est,
        ConstantCost(true_c[0]),
        [f"m{i}" for i in range(k)],
        order="given",
        max_depth=2,
        n_samples=8,
    )
    queries, answers = list(range(n)), [[0] * k] * n
    tracemalloc.start()
    try:
        rep = make_replayer(strat, queries, answers, true_q, true_c, 1)
        for lam in np.geomspace(1e-3, 30, 8):
            rep.replay(np.array([lam]), False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(rep, EstimatorReplayer)
    entries = list(rep._cache.values())
    assert len(entries) > 50  # many run-sets are reached ...
    stored = sum(e.rows.size for e in entries)
    full = len(entries) * n
    assert stored < full / 5  # ... each by a few of the queries only
    # Full (n, k, k) arrays per run-set would take len(entries) * 2 MB here.
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
