"""The Dask fit from Parquet partitions on two local worker processes (issue 11, item 5).

Target: 20 M queries x 5 models finishes, peak memory per worker at most 2 GB; report the time.
The default size is small so that CI (``--benchmark-disable``) runs it quickly; set
``CR_BENCH_DASK_ROWS`` (e.g. ``20000000``) and ``CR_BENCH_DASK_PARTITION`` (rows per
partition, default 50,000) for the real measurement:

    CR_BENCH_DASK_ROWS=20000000 CR_BENCH_DASK_PARTITION=1000000 \\
        pytest bench/test_bench_distributed.py --benchmark-only -s

``CR_BENCH_DASK_CACHE_MIB`` (default 0) is the ``cache_bytes`` of each worker, in MiB: with
room for a worker's share of the log, every partition is read once in the whole fit.

Worker memory is bounded by the partition size, not by the log: the test prints each worker's
peak resident set size (``ru_maxrss``) after the fit, its resident size before the fit, and
the size of one partition's tables. (tests/test_distributed.py checks the bound itself.)
"""

from __future__ import annotations

import os
import resource

import dask.distributed as distributed  # the [dask] extra
import numpy as np

from cascade_routing import distributed as D
from cascade_routing.estimators import TwoPhaseCost, TwoPhaseQuality
from cascade_routing.strategies import CascadeRouter

K = 5
ROWS = int(os.environ.get("CR_BENCH_DASK_ROWS", "200000"))
PARTITION = int(os.environ.get("CR_BENCH_DASK_PARTITION", "50000"))
#: MiB each worker may keep of the partitions it has read (``cache_bytes``); default none.
CACHE_MIB = int(os.environ.get("CR_BENCH_DASK_CACHE_MIB", "0"))
MODELS = [f"m{j}" for j in range(K)]


def write_synthetic(path: os.PathLike[str], rows: int, per_part: int) -> None:
    """Seeded synthetic partitions written one at a time (the log never sits in memory)."""
    for part, start in enumerate(range(0, rows, per_part)):
        n = min(per_part, rows - start)
        rng = np.random.default_rng(part)
        truth = rng.random((n, K))
        cost = rng.gamma(2.0, 1.0 + np.arange(K), (n, K))
        D.write_partition(
            os.path.join(path, f"part-{part:05d}.parquet"),
            MODELS,
            ante_quality=np.clip(truth + rng.normal(0, 0.2, (n, K)), 0, 1),
            post_quality=np.clip(truth + rng.normal(0, 0.05, (n, K)), 0, 1),
            ante_cost=np.clip(cost + rng.normal(0, 0.1, (n, K)), 0, None),
            post_cost=cost,
            true_quality=truth,
            true_cost=cost,
        )


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    import psutil  # a dependency of dask.distributed

    return float(psutil.Process().memory_info().rss) / 2**20


def test_dask_fit_from_parquet(benchmark, tmp_path) -> None:
    write_synthetic(tmp_path, ROWS, PARTITION)
    dummy = np.zeros((1, K))
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        idle = client.run(_rss_mib)

        def fit() -> CascadeRouter:
            s = CascadeRouter(TwoPhaseQuality(dummy, dummy), TwoPhaseCost(dummy, dummy), MODELS)
            return D.fit_distributed(s, client, tmp_path, budget=3.0, cache_bytes=CACHE_MIB << 20)

        s = benchmark.pedantic(fit, rounds=1, iterations=1)
        peaks = client.run(_peak_rss_mib)
    assert s.fit_info_["status"] == "ok"
    assert s.fit_info_["n_queries"] == ROWS
    assert abs(s.fit_info_["expected_cost"] - 3.0) < 1e-9
    print(
        f"\nDask fit {ROWS} x {K}, cache {CACHE_MIB} MiB per worker: "
        f"{s.fit_info_['seconds']:.1f} s, "
        f"{s.fit_info_['replays']} replays, {s.fit_info_['partitions']} partitions; "
        f"peak RSS per worker (MiB): {sorted(round(v) for v in peaks.values())} "
        f"(idle before the fit: {sorted(round(v) for v in idle.values())}); one partition's "
        f"tables: {min(PARTITION, ROWS) * K * len(D.FIELDS) * 8 / 2**20:.0f} MiB"
    )
