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

#: Workload A of the engine benchmarks (bench/_workloads.py) as a strategy: means and costs
#: ~ U(0, 1) per query, variance 0.01 (with a full covariance: correlation 0.5), λ = 0.5.
LAMBDA = 0.5


class WorkloadQuality:
    """Means ~ U(0, 1) per query; the same uncertainty for every run-set (the protocol)."""

    def __init__(self, k: int, kind: str) -> None:
        self.k = k
        self.unc = np.full(k, 0.01) if kind == "var" else 0.01 * (0.5 * np.eye(k) + 0.5)

    def uncertainty(self, ran: Any) -> np.ndarray:
        return self.unc

    def predict_mean(self, queries: Any, answers: Any) -> np.ndarray:
        return np.random.default_rng([int(q) for q in queries]).uniform(
            size=(len(queries), self.k)
        )

    def predict(self, queries: Any, answers: Any) -> cr.QualityEstimate:
        mean = self.predict_mean(queries, answers)
        unc = np.broadcast_to(self.unc, (len(queries), *self.unc.shape)).copy()
        if self.unc.ndim == 1:
            return cr.QualityEstimate(mean, var=unc)
        return cr.QualityEstimate(mean, cov=unc)


class WorkloadCost:
    def __init__(self, k: int) -> None:
        self.k = k

    def predict(self, queries: Any, answers: Any) -> np.ndarray:
        seed = [1, *(int(q) for q in queries)]
        return np.random.default_rng(seed).uniform(size=(len(queries), self.k))


def _router(k: int, kind: str = "cov") -> Strategy:
    models = [f"m{i}" for i in range(k)]
    s = CascadeRouter(WorkloadQuality(k, kind), WorkloadCost(k), models, order="given")
    s.set_lambdas([LAMBDA], gamma=0.0)
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
    return rng.uniform(size=k), rng.uniform(size=k)


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


@pytest.mark.parametrize("kind", ["var", "cov"])
@pytest.mark.parametrize("how", ["decider", "search_batch"])
def test_batch_k5_one_thread(benchmark: Any, how: str, kind: str) -> None:
    benchmark.group = f"batch k=5 one thread, 10,000 rows ({kind})"
    k, n = 5, 10_000
    s = _router(k, kind)
    d = s.decider()
    assert d.table is not None
    rng = np.random.default_rng(1)
    q, c = rng.uniform(size=(n, k)), rng.uniform(size=(n, k))
    ran = np.zeros(n, dtype=np.uint64)
    e = np.zeros(n, dtype=np.uint8)
    want = d.decide_batch(q, c, ran, e)
    if how == "decider":
        got = benchmark(d.decide_batch, q, c, ran, e)
    else:  # the baseline: the batched search with the factor repeated per row
        f = d.table.factors[0]
        sd = (
            np.ascontiguousarray(np.broadcast_to(f, (n, k))) if kind == "var" else np.zeros((n, 0))
        )
        chol = (
            np.ascontiguousarray(np.broadcast_to(f, (n, k, k)))
            if kind == "cov"
            else np.zeros((n, 0, 0))
        )
        mode = cr.UncertaintyMode.INDEPENDENT if kind == "var" else cr.UncertaintyMode.COVARIANCE
        normals = cr.standard_normals(k, s.n_samples, s.sample_seed)
        be = cr._backend.active()
        got = benchmark(
            be.run_search_batch, q, c, np.full(n, LAMBDA), mode, sd, chol, normals,
            np.zeros((n, k), dtype=np.uint8), s.options_, e, 1,
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
            path, WorkloadQuality(k, "cov"), WorkloadCost(k), models=s.models
        )
        return (fresh,), {}

    def first(fresh: Strategy) -> Any:
        return fresh.plan(0, answers)

    rounds = 1 if benchmark.disabled else 30
    got = benchmark.pedantic(first, setup=setup, rounds=rounds, iterations=1)
    assert got == want
    warm, after = [], []
    for _ in range(200 if not benchmark.disabled else 1):
        t0 = time.perf_counter()
        s.plan(0, answers)
        warm.append(time.perf_counter() - t0)
    # The same warm strategy right after a load of the policy (discarded): what is left of the
    # first decision's cost once the load's own effect on the caches is taken out.
    for _ in range(rounds):
        setup()
        t0 = time.perf_counter()
        s.plan(0, answers)
        after.append(time.perf_counter() - t0)
    benchmark.extra_info["warm_median_us"] = float(np.median(warm)) * 1e6
    benchmark.extra_info["warm_right_after_a_load_median_us"] = float(np.median(after)) * 1e6
    _p99(benchmark)


def test_c_abi_one_decision_k11(tmp_path: Path, benchmark: Any) -> None:
    """One decision through the C ABI from a C program (tests/c/decide.c), k = 11, full
    covariance, nothing run; the program times its own calls (median and p99 in extra_info),
    and its decisions must equal the Python decider's."""
    benchmark.group = "C ABI k=11 one decision (timed in C)"
    import subprocess

    from test_c_api import _compile, _rows  # tests/ is on the path (above)

    k, n = 11, 64
    d = _router(k).decider()
    rng = np.random.default_rng(3)
    q, c = rng.uniform(size=(n, k)), rng.uniform(size=(n, k))
    ran, e = np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint8)
    d.save_c(tmp_path / "d.bin")
    _rows(tmp_path / "rows.txt", q, c, ran, e)
    exe = _compile(tmp_path)
    repeats = 1 if benchmark.disabled else 20_000
    args = [str(exe), str(tmp_path / "d.bin"), str(tmp_path / "rows.txt"), str(repeats)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()
    want = d.decide_batch(q, c, ran, e)
    for i, line in enumerate(out[:n]):
        nm, mem, util = line.split()
        assert (int(nm), int(mem), float(util)) == (want[0][i], want[1][i], want[2][i])
    _, median_ns, p99_ns = out[-1].split()
    benchmark.extra_info["median_us"] = float(median_ns) / 1e3
    benchmark.extra_info["p99_us"] = float(p99_ns) / 1e3
    # The Python decider on the same rows, as the baseline of the same run.
    benchmark(lambda: [d.decide(q[i], c[i], 0, False) for i in range(n)])
    print(f"\nC ABI k=11 one decision: median {float(median_ns) / 1e3:.2f} us, "
          f"p99 {float(p99_ns) / 1e3:.2f} us (Python decider: the benchmark / {n})")  # fmt: skip
