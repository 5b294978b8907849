"""Timing report of the engine per backend: a plain script, no pytest.

    PYTHONPATH=python python bench/report.py [--budget SECONDS] [--backends cpp,numba,numpy]

Prints, for workloads A and B (see ``_workloads.py``), the median and 99th percentile of the
time of one ``search_supermodel`` call from Python (validation included) per backend and k, and
the throughput of ``search_supermodel_batch`` over 10,000 queries for k = 5 and 11 with
n_threads = 1 and 2. Every backend's decisions are first checked against the NumPy reference.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time

import numpy as np

import cascade_routing as cr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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

#: The NumPy reference is timed only up to this k (it needs seconds per decision beyond).
NUMPY_MAX_K = {"A": 16, "B": 11}
NUMPY_BATCH_MAX_K = 5


def _time_single(
    xs: list, budget: float, max_calls: int = 20_000, min_calls: int = 5
) -> np.ndarray:
    times = []
    start = time.perf_counter()
    for x in itertools.cycle(xs):
        t0 = time.perf_counter()
        decide(x)
        times.append(time.perf_counter() - t0)
        n = len(times)
        if n >= max_calls or (n >= min_calls and time.perf_counter() - start > budget):
            break
    return np.array(times)


def _check_single(xs: list, want: list) -> None:
    for x, w in zip(xs, want):
        got = decide(x)
        if (got.next_model, got.supermodel) != (w.next_model, w.supermodel):
            raise SystemExit(f"{cr.backend()} disagrees with the reference: {got} != {w}")


def single_table(backends: list[str], budget: float) -> None:
    print(
        "One decision from Python (search_supermodel, validation included): "
        "median / p99 in microseconds"
    )
    header = f"{'workload':<9}{'k':>3}{'candidates':>12}" + "".join(
        f"{b + ' median':>15}{b + ' p99':>13}" for b in backends
    )
    if "cpp" in backends and "numba" in backends:
        header += f"{'numba/cpp':>11}"
    print(header)
    for workload in WORKLOADS:
        for k in KS:
            n_inst = 16 if (k <= 11 or workload == "A") else 2
            xs = instances(workload, k, n_inst)
            with cr.use_backend("numpy"):
                want = [decide(x) for x in xs]
            evaluated = int(np.median([w.evaluated for w in want]))
            row = f"{workload:<9}{k:>3}{evaluated:>12}"
            medians = {}
            for be in backends:
                if be == "numpy" and k > NUMPY_MAX_K[workload]:
                    row += f"{'-':>15}{'-':>13}"
                    continue
                with cr.use_backend(be):
                    _check_single(xs, want)  # also the JIT warm-up
                    t = _time_single(xs, budget) * 1e6
                medians[be] = float(np.median(t))
                row += f"{medians[be]:>15.1f}{np.percentile(t, 99):>13.1f}"
            if "cpp" in medians and "numba" in medians:
                row += f"{medians['numba'] / medians['cpp']:>11.1f}"
            print(row, flush=True)


def batch_table(backends: list[str], budget: float) -> None:
    print(
        f"\nBatches of n = {BATCH_N:,} (search_supermodel_batch): decisions per second "
        "(median of repeats)"
    )
    print(
        f"{'workload':<9}{'k':>3}  {'backend':<8}{'n_threads':>10}{'decisions/s':>14}"
        f"{'s per batch':>13}{'repeats':>9}"
    )
    for workload in WORKLOADS:
        for k in BATCH_KS:
            kw = batch(workload, k)
            with cr.use_backend("numpy"):
                want = cr.search_supermodel_batch(**head(kw, 100))
            for be in backends:
                if be == "numpy" and k > NUMPY_BATCH_MAX_K:
                    continue
                for n_threads in (1, 2) if be == "cpp" else (1,):
                    with cr.use_backend(be):
                        warm = cr.search_supermodel_batch(**head(kw, 100), n_threads=n_threads)
                        if not same_batch(warm, want, 100):
                            raise SystemExit(f"{be} batch disagrees with the reference")
                        times = []
                        start = time.perf_counter()
                        while not times or (
                            len(times) < 5 and time.perf_counter() - start < budget
                        ):
                            t0 = time.perf_counter()
                            cr.search_supermodel_batch(**kw, n_threads=n_threads)
                            times.append(time.perf_counter() - t0)
                    med = float(np.median(times))
                    print(
                        f"{workload:<9}{k:>3}  {be:<8}{n_threads:>10}{BATCH_N / med:>14,.0f}"
                        f"{med:>13.3f}{len(times):>9}",
                        flush=True,
                    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="seconds of timing per table cell (default 1)",
    )
    parser.add_argument(
        "--backends",
        default=",".join(cr.available_backends()),
        help="comma-separated backends (default: all available)",
    )
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    for be in backends:
        if be not in cr.available_backends():
            raise SystemExit(f"backend {be!r} is not available here")
    versions = f"NumPy {np.__version__}"
    if "numba" in cr.available_backends():
        import numba

        versions += f", Numba {numba.__version__}"
    print(
        f"cascade-routing {cr.__version__}; Python {platform.python_version()}, {versions}; "
        f"{os.cpu_count()} CPUs, {platform.machine()}; backends: {', '.join(backends)}"
    )
    print(
        "Workload A: q, c ~ U(0,1), var 0.01, nothing run, lam ~ U(0,1), force_order=False; "
        "workload B: the same with lam = 0 (no pruning). 'candidates': median supermodels "
        "scored per decision.\n"
    )
    single_table(backends, args.budget)
    batch_table(backends, args.budget)


if __name__ == "__main__":
    main()
