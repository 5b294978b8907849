"""Library overhead of the decision loop: the time of ``run`` / ``arun`` outside the model
calls and the user's estimators, with 4 models and 3 calls per query.

Issue target: at most 30 µs per query. The estimators and the model client here cost next to
nothing (cached arrays, a constant answer); the baseline, measured in the same run, is that
same user code (3 calls and the 4 rounds of estimates the loop asks for) in a bare Python
loop. ``overhead = run − baseline`` per query.

Run: ``pytest bench/test_bench_serve_loop.py --benchmark-only -s``; CI runs it with
``--benchmark-disable``. The overhead is reported (``extra_info`` and printed), and only a
regression guard of 1 ms per query is asserted: the 30 µs target is not met today (see the
printed figures), and this shared machine's load moves the figure by tens of µs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from _workloads import median_seconds
from cascade_routing.estimators import QualityEstimate

MODELS = ["m0", "m1", "m2", "m3"]
PRIOR = np.array([0.5, 0.6, 0.7, 0.95])
COST = np.array([[1.0, 2.0, 3.0, 400.0]])
CALLS = 3


class CachedQuality:
    """Ex ante the prior; an answered model scores 0.3 (post hoc). Arrays are cached per
    state, so that the estimator costs a dict look-up."""

    def __init__(self) -> None:
        self.cache: dict[tuple[bool, ...], QualityEstimate] = {}

    def predict(self, queries: Any, answers: Any) -> QualityEstimate:
        key = tuple(a is not None for a in answers[0])
        est = self.cache.get(key)
        if est is None:
            mean, var = PRIOR.copy(), np.full(len(MODELS), 0.01)
            for j, ran in enumerate(key):
                if ran:
                    mean[j], var[j] = 0.3, 1e-6
            est = self.cache[key] = QualityEstimate(mean[None, :], var[None, :])
        return est


class FixedCost:
    def predict(self, queries: Any, answers: Any) -> np.ndarray:
        return COST


def call(name: str, query: Any) -> tuple[str, float]:
    return "answer", 1.0


async def acall(name: str, query: Any) -> tuple[str, float]:
    return "answer", 1.0


@pytest.fixture(scope="module")
def strategy() -> cr.CascadeRouter:
    with cr.use_backend("cpp"):
        strat = cr.CascadeRouter(CachedQuality(), FixedCost(), MODELS, order="given")
        strat.set_lambdas(0.01)
        result = strat.run(0, call)
    assert [s.status for s in result.trace] == ["ok"] * CALLS + ["stop"]
    return strat


def _baseline(strat: cr.CascadeRouter) -> Any:
    """The user's share of one query: the same estimator rounds and calls, nothing else."""
    q, c = strat.quality_estimator, strat.cost_estimator

    def user_code() -> None:
        answers: list[Any] = [None] * len(MODELS)
        for j in range(CALLS):
            q.predict([0], [answers])
            c.predict([0], [answers])
            answers[j] = call(MODELS[j], 0)[0]
        q.predict([0], [answers])
        c.predict([0], [answers])

    return user_code


def _report(benchmark: Any, name: str, total: float, user: float) -> None:
    overhead = total - user
    info = {
        "per_query_us": total * 1e6,
        "user_code_us": user * 1e6,
        "overhead_us": overhead * 1e6,
        "target_us": 30.0,
        "ratio_to_user_code": total / user,
    }
    benchmark.extra_info.update(info)
    print(f"\n{name} overhead (4 models, 3 calls per query):", json.dumps(info, indent=1))
    assert overhead < 1e-3  # a regression guard; the target is reported above


def test_run_overhead(benchmark: Any, strategy: cr.CascadeRouter) -> None:
    with cr.use_backend("cpp"):
        result = benchmark(strategy.run, 0, call)
        assert len([s for s in result.trace if s.status == "ok"]) == CALLS
        if benchmark.enabled:
            total = benchmark.stats.stats.median
            _report(benchmark, "run", total, median_seconds(_baseline(strategy), 3000))


def test_arun_overhead(benchmark: Any, strategy: cr.CascadeRouter) -> None:
    loop = asyncio.new_event_loop()
    try:
        with cr.use_backend("cpp"):

            def one() -> Any:
                return loop.run_until_complete(strategy.arun(0, acall))

            result = benchmark(one)
            assert len([s for s in result.trace if s.status == "ok"]) == CALLS
            if benchmark.enabled:
                user = _baseline(strategy)

                async def nothing() -> None:
                    user()

                base = median_seconds(lambda: loop.run_until_complete(nothing()), 3000)
                _report(benchmark, "arun", benchmark.stats.stats.median, base)
    finally:
        loop.close()
