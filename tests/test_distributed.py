"""Fitting on a Dask cluster from Parquet partitions (cascade_routing.distributed).

The cluster is real: two worker processes, one thread each, started once for the module.
The reference is the in-memory ``Strategy.fit`` itself: the two fits must agree exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from _backends import require_module

require_module("pyarrow", "dask")
distributed = require_module("dask.distributed", "dask")

import pyarrow.parquet as pq  # noqa: E402

from cascade_routing import distributed as D  # noqa: E402
from cascade_routing._exact import exact_column_means, exact_mean, exact_sum  # noqa: E402
from cascade_routing.estimators import ConstantCost, TwoPhaseCost, TwoPhaseQuality  # noqa: E402
from cascade_routing.experiments import datasets, simulation  # noqa: E402
from cascade_routing.experiments.settings import PAPER_POOLS  # noqa: E402
from cascade_routing.strategies.concrete import (  # noqa: E402
    Cascade,
    CascadeRouter,
    Router,
    ThresholdCascade,
)

STRATEGIES = [Router, Cascade, CascadeRouter, ThresholdCascade]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def bench():
    """Every row of the bundled RouterBench subset, pool 5, simulated low-noise estimates."""
    data = datasets.load("routerbench")
    run = simulation.routerbench_run(data, PAPER_POOLS[5], "low")
    est = run.estimates
    ce = est.cost_estimator()
    return {
        "models": list(run.dataset.models),
        "qe": est.quality_estimator(),
        "ce": ce,
        "quality": run.dataset.quality,
        "cost": run.dataset.cost,
        "tables": {
            "ante_quality": est.ante_quality,
            "post_quality": est.post_quality,
            "ante_var": est.ante_var,
            "post_var": est.post_var,
            "ante_cost": ce.ante,
            "post_cost": ce.post,
            "true_quality": run.dataset.quality,
            "true_cost": run.dataset.cost,
        },
    }


@pytest.fixture(scope="module")
def bench_parts(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench_parts")
    # An odd partition size: the last partition is short.
    D.write_partitions(path, bench["models"], rows_per_partition=701, **bench["tables"])
    return path


def fitted_state(s):
    return (
        s.lambdas_.tolist(),
        None if s.lambdas_expensive_ is None else s.lambdas_expensive_.tolist(),
        s.gamma_,
        s.fit_info_["status"],
        s.fit_info_["expected_cost"],
        s.fit_info_["expected_quality"],
        s.order_.tolist(),
    )


def budgets(cost):
    means = np.sort(cost.mean(axis=0))
    return [float(0.5 * (means[0] + means[1])), float(means[2])]


# ------------------------------------------------------------------ exact sums


def test_exact_sum_is_exact_and_order_free() -> None:
    rng = np.random.default_rng(3)
    cases = [
        rng.normal(size=2000) * 10.0 ** rng.integers(-300, 300, 2000),
        np.array([5e-324, -5e-324, 1e308, 1e308, -1e308, 2.2250738585072014e-308, -3e-320]),
        rng.random(70_000),
        np.array([0.0, -0.0]),
    ]
    for x in cases:
        exact = sum((Fraction(v) for v in x.tolist()), Fraction(0))
        assert Fraction(exact_sum(x), 2**1074) == exact
        assert exact_mean(x) == float(exact / x.size)
        assert exact_sum(x[::-1]) == exact_sum(x)
    assert exact_mean(np.zeros(0)) == 0.0
    # NumPy's pairwise mean is not always exactly rounded, and depends on how the values are
    # split (why the fit uses exact means): find a case.
    misses = 0
    for seed in range(200):
        x = np.random.default_rng(seed).random(1000) * 3
        exact = Fraction(sum((Fraction(v) for v in x.tolist()), Fraction(0))) / x.size
        assert exact_mean(x) == float(exact)
        misses += x.mean() != float(exact)
    assert misses > 0
    t = np.random.default_rng(1).random((300, 4))
    assert exact_column_means(t) == [exact_mean(t[:, j]) for j in range(4)]


# ------------------------------------------------------------------ the Dask fit


@pytest.mark.parametrize("cls", STRATEGIES)
def test_dask_fit_equals_the_in_memory_fit(cls, bench, bench_parts, client) -> None:
    models, q, c = bench["models"], bench["quality"], bench["cost"]
    rows = np.arange(q.shape[0])
    full = [[0] * len(models)] * q.shape[0]  # table estimators read the rows only
    for budget in budgets(c):
        ours = D.fit_distributed(
            cls(bench["qe"], bench["ce"], models), client, bench_parts, budget=budget
        )
        ref = cls(bench["qe"], bench["ce"], models).fit(rows, full, q, c, budget=budget)
        assert ours.fit_info_["replay_engine"] == "dask"
        assert ref.fit_info_["replay_engine"] == "compiled"
        assert ours.fit_info_["partitions"] == math.ceil(q.shape[0] / 701)
        assert ours.fit_info_["n_queries"] == ref.fit_info_["n_queries"] == q.shape[0]
        assert ours.fit_info_["replays"] == ref.fit_info_["replays"]
        assert ours.fit_info_["status"] == "ok"
        assert 0.0 < ours.gamma_ < 1.0
        assert fitted_state(ours) == fitted_state(ref)
        # The expected cost spends the budget (up to the rounding of γ's mixture).
        assert ours.fit_info_["expected_cost"] == pytest.approx(budget, rel=1e-9)


def synthetic_log(n, k, seed):
    """Seeded logged tables (no variances; the cost estimates are the true costs)."""
    rng = np.random.default_rng(seed)
    truth = rng.random((n, k))
    ante = np.clip(truth + rng.normal(0, 0.2, (n, k)), 0, 1)
    post = np.clip(truth + rng.normal(0, 0.05, (n, k)), 0, 1)
    cost = rng.gamma(2.0, 1.0 + np.arange(k), (n, k))
    models = [f"m{j}" for j in range(k)]
    return models, dict(
        ante_quality=ante,
        post_quality=post,
        ante_cost=cost,
        post_cost=cost,
        true_quality=truth,
        true_cost=cost,
    )


def test_without_variances_with_constant_cost_and_any_partitioning(client, tmp_path) -> None:
    n, k = 900, 4
    models, tables = synthetic_log(n, k, 11)
    ante, post, truth, cost = (
        tables[f] for f in ("ante_quality", "post_quality", "true_quality", "true_cost")
    )
    ce = ConstantCost.from_training(cost)
    tables["ante_cost"] = tables["post_cost"] = np.tile(ce.costs, (n, 1))
    budget = float(np.sort(cost.mean(axis=0))[1])
    results = []
    for size in (n, 257):
        path = tmp_path / f"p{size}"
        D.write_partitions(path, models, rows_per_partition=size, **tables)
        for cls in (ThresholdCascade, CascadeRouter):
            s = cls(TwoPhaseQuality(ante, post), ce, models)
            results.append(
                (cls, size, fitted_state(D.fit_distributed(s, client, path, budget=budget)))
            )
    for cls in (ThresholdCascade, CascadeRouter):
        ref = cls(TwoPhaseQuality(ante, post), ce, models).fit(
            np.arange(n), [[0] * k] * n, truth, cost, budget=budget
        )
        got = [state for c_, _, state in results if c_ is cls]
        assert got == [fitted_state(ref)] * 2


def test_per_step_and_given_order(bench, bench_parts, client) -> None:
    models, q, c = bench["models"], bench["quality"], bench["cost"]
    order = list(reversed(models))
    budget = budgets(c)[1]
    ours = D.fit_distributed(
        Cascade(bench["qe"], bench["ce"], models, order=order),
        client,
        bench_parts,
        budget=budget,
        lambdas="per_step",
        n_trials=6,
        seed=5,
    )
    ref = Cascade(bench["qe"], bench["ce"], models, order=order).fit(
        np.arange(q.shape[0]),
        [[0] * len(models)] * q.shape[0],
        q,
        c,
        budget=budget,
        lambdas="per_step",
        n_trials=6,
        seed=5,
    )
    assert fitted_state(ours) == fitted_state(ref)
    assert ours.order_.tolist() == [models.index(m) for m in order]


@pytest.mark.parametrize("parts_kept", [None, 2, 0])
def test_worker_cache_within_its_budget_same_fit(bench, bench_parts, client, parts_kept) -> None:
    """``cache_bytes``: all partitions kept (None), at most two per worker, or none; the fit is
    the same, and the cache is released when it ends."""
    models, q, c = bench["models"], bench["quality"], bench["cost"]
    n_parts = math.ceil(q.shape[0] / 701)
    part_bytes = 701 * len(models) * (len(D.FIELDS) + len(D.VAR_FIELDS)) * 8
    budget = budgets(c)[0]
    ref = CascadeRouter(bench["qe"], bench["ce"], models).fit(
        np.arange(q.shape[0]), [[0] * len(models)] * q.shape[0], q, c, budget=budget
    )
    seen = []

    def progress(done, total):
        seen.append(client.run(D.cache_info))

    cache_bytes = 10**9 if parts_kept is None else parts_kept * part_bytes
    ours = D.fit_distributed(
        CascadeRouter(bench["qe"], bench["ce"], models),
        client,
        bench_parts,
        budget=budget,
        cache_bytes=cache_bytes,
        progress=progress,
    )
    assert fitted_state(ours) == fitted_state(ref)
    last = seen[-1].values()
    if parts_kept == 0:
        assert all(info == (0, 0, 0, 0) for state in seen for info in state.values())
    else:
        # Each replay asks each partition of the cache once; every worker within its budget.
        assert sum(info[2] + info[3] for info in last) == n_parts * len(seen)
        assert all(info[1] <= cache_bytes for info in last)
        assert sum(info[2] for info in last) > 0
    if parts_kept is None:
        # Every partition kept by the worker it was sent to: read once in the whole fit.
        assert sum(info[0] for info in last) == n_parts
        assert sum(info[3] for info in last) == n_parts
    elif parts_kept:
        assert all(info[0] <= parts_kept for info in last)
    assert all(info == (0, 0, 0, 0) for info in client.run(D.cache_info).values())
    with pytest.raises(ValueError, match="cache_bytes"):
        D.fit_distributed(ours, client, bench_parts, budget=budget, cache_bytes=-1)


# ------------------------------------------------------------------ memory per worker


def test_worker_memory_is_bounded_by_the_partition_not_the_log(client, tmp_path) -> None:
    """Peak memory the workers allocate during a fit (traced by ``tracemalloc``, which sees
    NumPy's buffers), for logs of 2 and 8 partitions of the same size, and for the larger log
    cut in partitions 4x as large."""
    import tracemalloc

    rows, k = 10_000, 5
    part_bytes = rows * k * len(D.FIELDS) * 8
    models, log = synthetic_log(8 * rows, k, 7)
    # The same log in 8 partitions and in 2 partitions 4x as large; its first quarter.
    logs = {"small": (2 * rows, rows), "large": (8 * rows, rows), "coarse": (8 * rows, 4 * rows)}
    for name, (n, per) in logs.items():
        tables = {field: t[:n] for field, t in log.items()}
        D.write_partitions(tmp_path / name, models, rows_per_partition=per, **tables)
    dummy = np.zeros((1, k))

    def fit(name):
        s = CascadeRouter(TwoPhaseQuality(dummy, dummy), TwoPhaseCost(dummy, dummy), models)
        return D.fit_distributed(s, client, tmp_path / name, budget=3.0, n_iter=2)

    fit("small")  # imports and caches on the workers happen before tracing
    client.run(tracemalloc.start)
    try:
        peak = {}
        for name in logs:
            client.run(tracemalloc.reset_peak)
            before = client.run(tracemalloc.get_traced_memory)
            assert fit(name).fit_info_["status"] == "ok"
            after = client.run(tracemalloc.get_traced_memory)
            peak[name] = max(after[w][1] - before[w][0] for w in after)
    finally:
        client.run(tracemalloc.stop)
    # A log 4x as long: the same peak per worker, far below the log's size.
    assert peak["large"] <= 1.5 * peak["small"] + 2**20
    assert peak["large"] < 8 * part_bytes / 3
    # The same log in partitions 4x as large: the peak follows the partition (so the
    # measurement does see the tables), within the documented three copies.
    assert peak["coarse"] > 2.5 * peak["small"]
    assert peak["coarse"] < 3 * 4 * part_bytes


# ------------------------------------------------------------------ bad inputs


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    rng = np.random.default_rng(0)
    n, models = 40, ["a", "b", "c"]
    t = {
        name: rng.random((n, 3))
        for name in (
            "ante_quality",
            "post_quality",
            "ante_cost",
            "post_cost",
            "true_quality",
            "true_cost",
        )
    }
    path = tmp_path_factory.mktemp("small")
    D.write_partitions(path, models, rows_per_partition=15, **t)
    strategy = CascadeRouter(
        TwoPhaseQuality(t["ante_quality"], t["post_quality"]),
        TwoPhaseCost(t["ante_cost"], t["post_cost"]),
        models,
    )
    return path, models, t, strategy


def test_missing_columns_are_named(small, client, tmp_path) -> None:
    path, models, _, strategy = small
    files = sorted(path.glob("*.parquet"))
    table = pq.read_table(files[0]).drop_columns(["true_cost/b"])
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(table, bad / "part-00000.parquet")
    with pytest.raises(ValueError, match=r"misses columns \['true_cost/b'\]"):
        D.fit_distributed(strategy, client, bad, budget=0.5)


def test_wrong_model_count_and_names(small, client) -> None:
    path, models, t, _ = small
    two = CascadeRouter(
        TwoPhaseQuality(t["ante_quality"][:, :2], t["post_quality"][:, :2]),
        TwoPhaseCost(t["ante_cost"][:, :2], t["post_cost"][:, :2]),
        models[:2],
    )
    with pytest.raises(ValueError, match="holds 3 models .* the strategy has 2"):
        D.fit_distributed(two, client, path, budget=0.5)
    renamed = CascadeRouter(
        TwoPhaseQuality(t["ante_quality"], t["post_quality"]),
        TwoPhaseCost(t["ante_cost"], t["post_cost"]),
        ["a", "c", "b"],
    )
    with pytest.raises(ValueError, match="same names, same order"):
        D.fit_distributed(renamed, client, path, budget=0.5)


def test_bad_values_paths_clients_and_tables(small, client, tmp_path) -> None:
    path, models, t, strategy = small
    nan = dict(t)
    nan["true_cost"] = t["true_cost"].copy()
    nan["true_cost"][3, 1] = np.nan
    # write_partitions refuses NaN itself; a partition written by other tools is refused
    # on the worker.
    with pytest.raises(ValueError, match="true_cost"):
        D.write_partitions(tmp_path / "nan", models, **nan)
    table = pq.read_table(sorted(path.glob("*.parquet"))[0])
    idx = table.schema.get_field_index("true_cost/b")
    col = table.column(idx).to_numpy().copy()
    col[3] = -1.0
    import pyarrow as pa

    bad = tmp_path / "negative"
    bad.mkdir()
    pq.write_table(table.set_column(idx, "true_cost/b", pa.array(col)), bad / "p.parquet")
    with pytest.raises(ValueError, match="true_cost of partition"):
        D.fit_distributed(strategy, client, bad, budget=0.5)
    with pytest.raises(ValueError, match="no .parquet files"):
        D.fit_distributed(strategy, client, tmp_path, budget=0.5)
    with pytest.raises(ValueError, match="neither a directory nor a file"):
        D.fit_distributed(strategy, client, tmp_path / "nowhere", budget=0.5)
    with pytest.raises(TypeError, match="dask.distributed.Client"):
        D.fit_distributed(strategy, object(), path, budget=0.5)
    with pytest.raises(ValueError, match="budget"):
        D.fit_distributed(strategy, client, path, budget=-1.0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['n_trails'\]"):
        D.fit_distributed(strategy, client, path, budget=0.5, n_trails=3)
    with pytest.raises(ValueError, match="lambdas must be one of"):
        D.fit_distributed(strategy, client, path, budget=0.5, lambdas="each")
    with pytest.raises(TypeError, match=r"missing \['true_cost'\]"):
        D.write_partitions(
            tmp_path / "m", models, **{k: v for k, v in t.items() if k != "true_cost"}
        )
    with pytest.raises(ValueError, match="already holds .parquet files"):
        D.write_partitions(path, models, **t)
    with pytest.raises(ValueError, match="ante_var and post_var"):
        D.write_partitions(tmp_path / "v", models, ante_var=t["ante_cost"], **t)
    short = dict(t)
    short["post_cost"] = t["post_cost"][:-1]
    with pytest.raises(ValueError, match="post_cost"):
        D.write_partitions(tmp_path / "short", models, **short)
    with pytest.raises(ValueError, match="model columns"):
        D.write_partitions(tmp_path / "k", models[:2], **t)
