"""Speed of the learned quality estimator (issue targets in the docstrings).

Run: ``pytest bench/test_bench_learn.py --benchmark-only``; CI runs the same file with
``--benchmark-disable`` so that it cannot rot (the assertions on time only apply when timing).
The logs are synthetic with nine models, like the llm_cascades data: a topic word in the
text, a per-model skill per topic, a per-query difficulty, 0/1 correctness, a noisy
log-probability confidence and a parsed answer that agrees between correct models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from _workloads import median_seconds
from cascade_routing.learn import LearnedQuality, ModelAnswer

K = 9
N_FIT = 10_000
N_PREDICT_TRAIN = 2_000
TOPICS = ("algebra", "history", "biology", "law", "physics", "poetry")


def logs(n: int, k: int = K, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng([n, k, seed])
    skill = np.linspace(-0.5, 2.0, k)[:, None] + rng.normal(0.0, 0.7, (k, len(TOPICS)))
    topic = rng.integers(0, len(TOPICS), n)
    difficulty = rng.standard_normal(n)
    logit = skill[:, topic].T - 1.2 * difficulty[:, None]
    quality = (rng.random((n, k)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    signal = 1.5 * (2 * quality - 1) + 0.5 * logit + rng.normal(0.0, 1.0, (n, k))
    confidence = -np.log1p(np.exp(-signal))
    wrong = rng.choice(np.array(["B", "C", "D"]), size=(n, k))
    words = rng.integers(0, 500, (n, 8))
    queries, answers = [], []
    for i in range(n):
        text = f"{TOPICS[topic[i]]} question " + " ".join(f"w{w}" for w in words[i])
        queries.append({"text": text})
        answers.append(
            [
                ModelAnswer(
                    text="A" if quality[i, j] else str(wrong[i, j]),
                    parsed="A" if quality[i, j] else str(wrong[i, j]),
                    confidence=float(confidence[i, j]),
                    cost=1e-6 * 2.0**j,
                )
                for j in range(k)
            ]
        )
    return {"queries": queries, "answers": answers, "quality": quality}


@pytest.fixture(scope="module")
def fitted() -> tuple[LearnedQuality, dict[str, Any]]:
    train = logs(N_PREDICT_TRAIN, seed=0)
    est = LearnedQuality(seed=0).fit(train["queries"], train["answers"], train["quality"])
    return est, logs(200, seed=1)


@pytest.mark.parametrize("n_answers", [0, 4, 9])
def test_predict_one_query(benchmark: Any, fitted: Any, n_answers: int) -> None:
    """Target: median at most 200 us for one query with up to 9 answers (a service's step).

    The query's text was seen at the previous step (its ex-ante part is cached, as in a
    service that calls ``predict`` once per step). Baseline of the same run, in extra_info:
    one decision of the compiled search on the estimate (9 models, full covariance), so the
    estimator's share of a step is visible.
    """
    est, test = fitted
    q = [test["queries"][7]]
    row = [a if j < n_answers else None for j, a in enumerate(test["answers"][7])]
    est.predict(q, [row])
    out = benchmark(est.predict, q, [row])
    assert out.mean.shape == (1, K) and out.cov is not None
    if benchmark.enabled:
        cost = np.geomspace(1.0, 256.0, K)
        ran = np.array([a is not None for a in row])
        if ran.all():
            core_s = float("nan")
        else:
            mean, cov, run = out.mean[0], out.cov[0], np.flatnonzero(ran)
            core_s = median_seconds(
                lambda: cr.search_supermodel(
                    mean, cost, 1e-3, cov=cov, ran=run, force_order=False, max_depth=5
                )
            )
        benchmark.extra_info["core_decision_us"] = core_s * 1e6
        benchmark.extra_info["ratio_to_core"] = benchmark.stats.stats.median / core_s
        assert benchmark.stats.stats.median <= 200e-6


def test_predict_one_new_query(benchmark: Any, fitted: Any) -> None:
    """A query never seen (the ex-ante text model runs): reported, no target."""
    est, test = fitted
    row = test["answers"][3][:2] + [None] * (K - 2)
    counter = iter(range(10**9))

    def call() -> Any:
        q = {"text": test["queries"][3]["text"] + f" n{next(counter)}"}
        return est.predict([q], [row])

    assert benchmark(call).mean.shape == (1, K)


def test_fit_10k_queries_9_models(benchmark: Any) -> None:
    """Target: fit on 10,000 logged queries x 9 models in at most 60 s on 2 cores."""
    data = logs(N_FIT, seed=2)

    def fit() -> LearnedQuality:
        return LearnedQuality(seed=0).fit(data["queries"], data["answers"], data["quality"])

    est = benchmark.pedantic(fit, rounds=1, iterations=1)
    assert est.cov_.shape == (2**K, K, K)
    if benchmark.enabled:
        benchmark.extra_info["scale"] = est.scale_
        assert benchmark.stats.stats.median <= 60.0
