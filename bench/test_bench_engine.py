"""Engine benchmarks: one decision from Python and batches of 10,000 (docs/algorithm.md §4).

Run: ``pytest bench/test_bench_engine.py --benchmark-only`` (add ``--benchmark-group-by=group``
to see each workload and k with its backends side by side). CI runs the same file with
``--benchmark-disable``: every benchmark then runs once and still checks its answer.

Every benchmark checks its decisions against the NumPy reference, warms up (Numba compiles or
loads its cache on the first call) before timing, and sits in a group with the other backends
of the same workload, so the C++ figure is compared with baselines measured in the same run;
the summary at the end prints the numpy/cpp and numba/cpp ratios.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from _workloads import (
    BATCH_KS,
    BATCH_N,
    KS,
    WORKLOADS,
    batch,
    decide,
    head,
    instances,
    same_batch,
)

#: The NumPy reference is timed only where it takes milliseconds.
NUMPY_MAX_K = 11
#: Batch rows checked against the reference (all rows are checked against the other backends).
CHECKED_ROWS = 200


def require_backend(name: str) -> None:
    try:
        cr._backend.get(name)
    except ImportError as exc:
        reason = f"backend {name!r} is not available: {exc}"
        if os.environ.get("CASCADE_ROUTING_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def n_instances(workload: str, k: int) -> int:
    # Workload B has no pruning: 2^k - 1 candidates; the reference needs ~5 s at k = 20.
    if k <= 11:
        return 16
    if workload == "A":
        return 8
    return 2 if k == 16 else 1


@functools.cache
def single_cases(workload: str, k: int) -> tuple[list, list]:
    xs = instances(workload, k, n_instances(workload, k))
    with cr.use_backend("numpy"):
        want = [decide(x) for x in xs]
    return xs, want


@functools.cache
def batch_reference(workload: str, k: int) -> cr.BatchSearchResult:
    with cr.use_backend("numpy"):
        return cr.search_supermodel_batch(**head(batch(workload, k), CHECKED_ROWS))


def assert_decision(got: cr.SearchResult, want: cr.SearchResult) -> None:
    assert (got.next_model, got.supermodel) == (want.next_model, want.supermodel), (
        got,
        want,
    )
    assert got.utility == pytest.approx(want.utility, rel=1e-12, abs=1e-12)
    assert got.evaluated == want.evaluated


SINGLE = [
    pytest.param(w, k, be, id=f"{w}-k{k}-{be}")
    for w in WORKLOADS
    for k in KS
    for be in ("cpp", "numba", "numpy")
    if be != "numpy" or k <= NUMPY_MAX_K
]


@pytest.mark.parametrize(("workload", "k", "backend_name"), SINGLE)
def test_single_decision(
    benchmark: Any, ratio_log: Any, workload: str, k: int, backend_name: str
) -> None:
    require_backend(backend_name)
    xs, want = single_cases(workload, k)
    group = f"single {workload} k={k:02d}"
    benchmark.group = group
    benchmark.extra_info.update(backend=backend_name, workload=workload, k=k)
    with cr.use_backend(backend_name):
        # Warm-up (JIT) and the check of every instance against the reference.
        for x, w in zip(xs, want):
            assert_decision(decide(x), w)
        state = {"i": -1}

        def one_decision() -> tuple[int, cr.SearchResult]:
            state["i"] = (state["i"] + 1) % len(xs)
            return state["i"], decide(xs[state["i"]])

        i, res = benchmark(one_decision)
    assert_decision(res, want[i])
    ratio_log(benchmark, group, backend_name)


BATCH = [
    pytest.param(w, k, be, threads, id=f"{w}-k{k}-{be}-{threads}t")
    for w in WORKLOADS
    for k in BATCH_KS
    for be, threads in (("cpp", 1), ("cpp", 2), ("numba", 1), ("numpy", 1))
    if be != "numpy" or k <= 5
]


@pytest.mark.parametrize(("workload", "k", "backend_name", "n_threads"), BATCH)
def test_batch(
    benchmark: Any,
    ratio_log: Any,
    workload: str,
    k: int,
    backend_name: str,
    n_threads: int,
) -> None:
    require_backend(backend_name)
    kw = batch(workload, k)
    want = batch_reference(workload, k)
    group = f"batch {workload} k={k:02d} n={BATCH_N}"
    label = backend_name if n_threads == 1 else f"{backend_name}-{n_threads}t"
    benchmark.group = group
    benchmark.extra_info.update(
        backend=backend_name, workload=workload, k=k, n=BATCH_N, n_threads=n_threads
    )
    with cr.use_backend(backend_name):
        warm = cr.search_supermodel_batch(**head(kw, 16), n_threads=n_threads)  # JIT warm-up
        assert same_batch(warm, want, 16)
        res = benchmark.pedantic(
            cr.search_supermodel_batch,
            kwargs=dict(kw, n_threads=n_threads),
            rounds=3,
            iterations=1,
        )
    assert res.next_model.shape == (BATCH_N,)
    assert np.all(res.next_model >= 0)  # nothing ran: never stop
    assert same_batch(res, want, CHECKED_ROWS)
    ratio_log(benchmark, group, label)
