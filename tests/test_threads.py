"""Many Python threads deciding at once get the answers of one thread (the core is reentrant
and releases the GIL; STYLE.md practice 5)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from _backends import activate_backend
from _cases import MODES, random_instance

N_WORKERS = 8


@pytest.fixture(params=["cpp", "numba"])
def threaded_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backends that release the GIL (C++ is the one that must; Numba kernels are nogil)."""
    yield from activate_backend(request.param)


def _instances() -> list[dict[str, Any]]:
    rng = np.random.default_rng(2024)
    out = [random_instance(rng, MODES[i % 3], adversarial=i % 4 == 3, k_max=9) for i in range(150)]
    # A few large searches (no pruning possible at lam = 0) so that the GIL is released while
    # other threads are inside the core.
    for k in (10, 11):
        q, c = rng.uniform(size=k), rng.uniform(size=k)
        out.append(
            {
                "quality": q,
                "cost": c,
                "lam": 0.0,
                "var": np.full(k, 0.01),
                "force_order": False,
            }
        )
    return out


def _batches() -> list[dict[str, Any]]:
    rng = np.random.default_rng(2025)
    out = []
    for mode in MODES:
        n, k = 400, 8
        kw: dict[str, Any] = {
            "quality": rng.uniform(size=(n, k)),
            "cost": rng.uniform(size=(n, k)),
            "lam": rng.uniform(0, 0.5, size=n),
            "ran": rng.random((n, k)) < 0.2,
            "prefer": rng.random(n) < 0.5,
            "force_order": False,
        }
        if mode == "var":
            kw["var"] = rng.uniform(0, 0.05, size=(n, k))
        elif mode == "cov":
            a = rng.normal(size=(n, k, k)) * 0.1
            cov = a @ np.swapaxes(a, 1, 2)
            kw["cov"] = (cov + np.swapaxes(cov, 1, 2)) / 2
        out.append(kw)
    return out


def _run_many(
    instances: list[dict[str, Any]],
    batches: list[dict[str, Any]],
    order: np.ndarray,
    barrier: threading.Barrier | None,
) -> tuple[list, list]:
    if barrier is not None:
        barrier.wait(timeout=60)
    singles: list[Any] = [None] * len(instances)
    batch_results: list[Any] = [None] * (2 * len(batches))
    for step, i in enumerate(order):
        singles[i] = cr.search_supermodel(**instances[i])
        if step % 40 == 0:
            b = (step // 40) % len(batches)
            for t, n_threads in enumerate((1, 2)):
                batch_results[2 * b + t] = cr.search_supermodel_batch(
                    **batches[b], n_threads=n_threads
                )
    return singles, batch_results


def _assert_batch_equal(a: cr.BatchSearchResult, b: cr.BatchSearchResult) -> None:
    for field in (
        "next_model",
        "supermodel",
        "utility",
        "quality",
        "cost",
        "evaluated",
    ):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_threads_agree_with_one_thread(threaded_backend: str) -> None:
    instances, batches = _instances(), _batches()
    want_single = [cr.search_supermodel(**kw) for kw in instances]
    want_batch = [cr.search_supermodel_batch(**kw) for kw in batches]

    rng = np.random.default_rng(7)
    orders = [rng.permutation(len(instances)) for _ in range(2 * N_WORKERS)]
    barrier = threading.Barrier(N_WORKERS)
    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        futures = [
            pool.submit(_run_many, instances, batches, order, barrier if w < N_WORKERS else None)
            for w, order in enumerate(orders)
        ]
        results = [f.result(timeout=300) for f in futures]

    for singles, batch_results in results:
        for i, (got, want) in enumerate(zip(singles, want_single)):
            assert got == want, f"instance {i}: {got} != {want}"
        for j, got in enumerate(batch_results):
            if got is not None:
                _assert_batch_equal(got, want_batch[j // 2])
    assert sum(r is not None for _, br in results for r in br) >= N_WORKERS


def test_batch_threads_from_threads(threaded_backend: str) -> None:
    """Several threads each running a multi-threaded batch (n_threads = 2 and 0 = per core)."""
    batches = _batches()
    want = [cr.search_supermodel_batch(**kw) for kw in batches]
    jobs = [(b, n_threads) for b in range(len(batches)) for n_threads in (1, 2, 0)] * 3
    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        got = list(
            pool.map(
                lambda job: cr.search_supermodel_batch(**batches[job[0]], n_threads=job[1]),
                jobs,
            )
        )
    for (b, _), res in zip(jobs, got):
        _assert_batch_equal(res, want[b])


# --------------------------------------------------------------------------- stress

#: Rounds per thread of the stress test (scripts/sanitize.sh raises it under the sanitizers).
STRESS_ROUNDS = int(os.environ.get("CASCADE_ROUTING_STRESS_ROUNDS", "16"))


def _fixed_input() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """One batch (covariance mode), one long single decision (2^13 candidates, GIL released)
    and one replay, all shared read-only by every thread."""
    rng = np.random.default_rng(31)
    n, k = 600, 9
    a = rng.normal(size=(n, k, k)) * 0.1
    cov = a @ np.swapaxes(a, 1, 2)
    batch = {
        "quality": rng.uniform(size=(n, k)),
        "cost": rng.uniform(size=(n, k)),
        "lam": rng.uniform(0, 0.3, size=n),
        "cov": (cov + np.swapaxes(cov, 1, 2)) / 2,
        "ran": rng.random((n, k)) < 0.2,
        "prefer": rng.random(n) < 0.5,
        "force_order": False,
        "n_samples": 32,
    }
    k1 = 13
    single = {
        "quality": rng.uniform(size=k1),
        "cost": rng.uniform(size=k1),
        "lam": 0.0,
        "var": np.full(k1, 0.01),
        "force_order": False,
        "n_samples": 16,
    }
    m = 300

    def mat(scale: float = 1.0) -> np.ndarray:
        return rng.uniform(size=(m, k)) * scale

    replay = [
        mat(),
        mat(),
        mat(0.1),
        mat(0.01),
        mat(),
        mat(),
        mat(),
        mat(),
        np.array([0.2, 0.1, 0.05]),
        (rng.random(m) < 0.5).astype(np.uint8),
        rng.standard_normal((32, k)),
        True,
        0,
        np.zeros(k),
        k,
        False,
        False,
        True,
        8,
        False,
    ]
    return batch, single, replay


def test_stress_threads_on_one_input(threaded_backend: str) -> None:
    """N Python threads hammer one fixed input (batch, single decision and, on C++, the
    replay kernel, each also multi-threaded inside) and must get the one-thread answers
    every time (issue 10: thread stress, also run under ASan/UBSan by scripts/sanitize.sh)."""
    batch, single, replay = _fixed_input()
    want_batch = cr.search_supermodel_batch(**batch)
    want_single = cr.search_supermodel(**single)
    core = None
    if threaded_backend == "cpp":
        from cascade_routing import _core as core

        want_replay = core.replay_two_phase(*replay)
    barrier = threading.Barrier(N_WORKERS)

    def hammer(worker: int) -> int:
        barrier.wait(timeout=60)
        checked = 0
        for r in range(STRESS_ROUNDS):
            n_threads = (worker + r) % 3  # 0 = per core, 1, 2
            _assert_batch_equal(
                cr.search_supermodel_batch(**batch, n_threads=n_threads), want_batch
            )
            assert cr.search_supermodel(**single) == want_single
            checked += 2
            if core is not None:
                got = core.replay_two_phase(*replay, n_threads=n_threads)
                for x, y in zip(got, want_replay):
                    assert np.array_equal(x, y)
                checked += 1
        return checked

    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        counts = list(pool.map(hammer, range(N_WORKERS), timeout=600))
    per_round = 3 if core is not None else 2
    assert counts == [per_round * STRESS_ROUNDS] * N_WORKERS
