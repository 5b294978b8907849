"""The prepared decider (docs/decider.md): one decision at k = 11 (full covariance) and k = 5,
a batch at k = 5 on one thread, the first decision after ``load``, and one decision through
the C ABI from C (the C program times itself).

Each figure sits in a group with its baseline measured in the same run: ``next_model`` on the
same strategy before the decider (the estimators' full output, a PSD check and a Cholesky per
call), or a warm decision for the first one after ``load``. Run with ``--benchmark-only``;
CI runs the file with ``--benchmark-disable`` (every benchmark runs once and checks its
decision). Targets (issue 11): ≤ 10 µs, ≤ 3 µs, ≥ 2 M decisions/s, within 2× of warm, ≤ 5 µs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from cascade_routing.strategies import CascadeRouter, Strategy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "strategies"))

from _decider_cases import RandomCost, RunSetEstimator


def _router(k: int, kind: str = "cov") -> Strategy:
    s = CascadeRouter(RunSetEstimator(k, 5, kind), RandomCost(k, 6), [f"m{i}" for i in range(k)])
    s.set_lambdas([0.05], gamma=0.0)
    s.prepare()
    return s


def _unprepared(s: Strategy, query: Any, answers: list[Any]) -> Any:
    lams = s._check_fitted()
    ran = s._check_state(answers)
    est, cst = s._estimate([query], [answers])
    return s._plan(query, ran, est, cst, frozenset(), lams)


@pytest.fixture(autouse=True)
def _cpp() -> Any:
    try:
        cr._backend.get("cpp")
    except ImportError as exc:
        pytest.fail(f"the decider benchmarks need the compiled core: {exc}", pytrace=False)
    with cr.use_backend("cpp"):
        yield


def _p99(benchmark: Any) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        data = sorted(stats.stats.data)
        benchmark.extra_info["p99_us"] = data[int(0.99 * (len(data) - 1))] * 1e6
        benchmark.extra_info["median_us"] = stats.stats.median * 1e6


def _inputs(k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    return rng.uniform(0.2, 0.8, k), rng.uniform(0.0, 1.0, k)


@pytest.mark.parametrize("k", [11, 5])
def test_decider_one_query(benchmark: Any, k: int) -> None:
    benchmark.group = f"decider k={k} one query"
    s = _router(k)
    d = s.decider()
    q, c = _inputs(k)
    want = d.decide(q, c, 0, False)
    with cr.use_backend("numpy"):
        assert d.decide(q, c, 0, False) == want  # the oracle agrees
    got = benchmark(d.decide, q, c, 0, False)
    assert got == want
    _p99(benchmark)


@pytest.mark.parametrize("k", [11, 5])
def test_next_model_baseline(benchmark: Any, k: int) -> None:
    benchmark.group = f"decider k={k} one query"
    s = _router(k)
    plan = benchmark(_unprepared, s, 0, [None] * k)
    assert plan == s.plan(0, [None] * k)
    _p99(benchmark)


@pytest.mark.parametrize("how", ["decider", "search_batch"])
def test_batch_k5_one_thread(benchmark: Any, how: str) -> None:
    benchmark.group = "batch k=5 one thread (10,000 rows)"
    k, n = 5, 10_000
    s = _router(k)
    d = s.decider()
    rng = np.random.default_rng(1)
    q, c = rng.uniform(0.2, 0.8, (n, k)), rng.uniform(0.0, 1.0, (n, k))
    ran = np.zeros(n, dtype=np.uint64)
    e = np.zeros(n, dtype=np.uint8)
    want = d.decide_batch(q, c, ran, e)
    if how == "decider":
        got = benchmark(d.decide_batch, q, c, ran, e)
        np.testing.assert_array_equal(got[0], want[0])
    else:  # the baseline: the batched search with a Cholesky factor per row
        chol = np.ascontiguousarray(np.broadcast_to(d.table.factors[0], (n, k, k)))
        normals = cr.standard_normals(k, s.n_samples, s.sample_seed)
        be = cr._backend.active()
        got = benchmark(
            be.run_search_batch, q, c, np.full(n, 0.05), cr.UncertaintyMode.COVARIANCE,
            np.zeros((n, 0)), chol, normals, np.zeros((n, k), dtype=np.uint8), s.options_,
            e, 1,
        )  # fmt: skip
        np.testing.assert_array_equal(got[0], want[0])
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["decisions_per_s"] = n / stats.stats.median


def test_first_decision_after_load(benchmark: Any, tmp_path: Path) -> None:
    """The first plan of a freshly loaded policy, against a warm plan of the same strategy."""
    benchmark.group = "first decision after load"
    k = 11
    s = _router(k)
    path = tmp_path / "policy.json"
    s.save(path)
    answers = [None] * k
    want = s.plan(0, answers)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        fresh = CascadeRouter.load(
            path, RunSetEstimator(k, 5, "cov"), RandomCost(k, 6), models=s.models
        )
        return (fresh,), {}

    def first(fresh: Strategy) -> Any:
        return fresh.plan(0, answers)

    got = benchmark.pedantic(first, setup=setup, rounds=30, iterations=1)
    assert got == want
    warm = []
    for _ in range(200):
        t0 = time.perf_counter()
        s.plan(0, answers)
        warm.append(time.perf_counter() - t0)
    benchmark.extra_info["warm_median_us"] = float(np.median(warm)) * 1e6
    _p99(benchmark)


def test_c_abi_one_decision_k11(tmp_path: Path, benchmark: Any) -> None:
    """One decision through the C ABI from a C program, k = 11, full covariance (it times
    itself; the figure is reported in extra_info)."""
    benchmark.group = "C ABI k=11 one decision"
    from test_c_api import run_c_program

    repeats = 1 if benchmark.disabled else 20_000
    d, (q, c, ran, e), out = run_c_program(tmp_path, "cov", 11, 64, repeats=repeats)
    want = d.decide_batch(q, c, ran, e)
    for i, line in enumerate(out[:64]):
        nm, _, _ = line.split()
        assert int(nm) == want[0][i]
    _, median_ns, p99_ns = out[-1].split()
    benchmark.extra_info["median_us"] = float(median_ns) / 1e3
    benchmark.extra_info["p99_us"] = float(p99_ns) / 1e3
    benchmark(lambda: None)
    print(f"\nC ABI k=11 one decision: median {float(median_ns) / 1e3:.2f} us, "
          f"p99 {float(p99_ns) / 1e3:.2f} us")  # fmt: skip
