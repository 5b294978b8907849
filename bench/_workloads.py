"""The engine benchmark workloads, shared by ``test_bench_engine.py`` and ``report.py``.

Workload A: quality and cost ~ U(0, 1), independent variance 0.01 for every model, nothing
run, lam ~ U(0, 1), ``force_order=False`` (pruning cuts most of the search).
Workload B: the same with lam = 0 (no supermodel is ever pruned: the exhaustive worst case).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import cascade_routing as cr

WORKLOADS = ("A", "B")
KS = (2, 4, 8, 11, 16, 20)
BATCH_KS = (5, 11)
BATCH_N = 10_000
VARIANCE = 0.01
OPTIONS: dict[str, Any] = {"force_order": False}


@dataclass(frozen=True)
class Instance:
    quality: np.ndarray
    cost: np.ndarray
    lam: float
    var: np.ndarray


def instances(workload: str, k: int, m: int, seed: int = 0) -> list[Instance]:
    """``m`` seeded single-decision instances."""
    rng = np.random.default_rng([ord(workload), k, seed])
    out = []
    for _ in range(m):
        q, c = rng.uniform(size=k), rng.uniform(size=k)
        lam = float(rng.uniform()) if workload == "A" else 0.0
        out.append(Instance(q, c, lam, np.full(k, VARIANCE)))
    return out


def decide(x: Instance) -> cr.SearchResult:
    return cr.search_supermodel(x.quality, x.cost, x.lam, var=x.var, **OPTIONS)


def batch(workload: str, k: int, n: int = BATCH_N, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of one ``search_supermodel_batch`` call over ``n`` queries."""
    rng = np.random.default_rng([ord(workload), k, n, seed])
    lam = rng.uniform(size=n) if workload == "A" else np.zeros(n)
    return dict(
        quality=rng.uniform(size=(n, k)),
        cost=rng.uniform(size=(n, k)),
        lam=lam,
        var=np.full((n, k), VARIANCE),
        **OPTIONS,
    )


def head(kw: dict[str, Any], rows: int) -> dict[str, Any]:
    """The first ``rows`` queries of a batch."""
    return {key: (v[:rows] if isinstance(v, np.ndarray) else v) for key, v in kw.items()}


def same_batch(a: cr.BatchSearchResult, b: cr.BatchSearchResult, rows: int) -> bool:
    """Equal decisions on the first ``rows`` queries; utilities within 1e-12."""
    return bool(
        np.array_equal(a.next_model[:rows], b.next_model[:rows])
        and np.array_equal(a.supermodel[:rows], b.supermodel[:rows])
        and np.allclose(a.utility[:rows], b.utility[:rows], rtol=1e-12, atol=1e-12)
    )


def median_seconds(fn: Callable[[], Any], repeat: int = 2000, warmup: int = 100) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` calls: the baseline
    a benchmark compares itself with in the same run."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeat)
    for i in range(repeat):
        t = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t
    return float(np.median(times))
