"""Small synthetic logs for the learned-estimator tests (seeded, a few hundred queries)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade_routing.learn import ModelAnswer

MODELS = ("small", "medium", "large", "huge")
TOPICS = (
    ("algebra", "equation", "solve", "variable"),
    ("history", "empire", "century", "war"),
    ("biology", "cell", "protein", "gene"),
)
#: Skill of each model on each topic (logit scale).
SKILL = np.array([[-0.5, 0.8, -1.0], [0.3, 1.2, 0.0], [1.0, 1.5, 1.0], [1.6, 1.8, 1.7]])
COST = np.array([1.0, 3.0, 9.0, 27.0]) * 1e-6


def make_logs(n: int, seed: int = 0) -> dict[str, Any]:
    """Queries (dicts with text), ModelAnswers, 0/1 quality, cost and the raw confidences."""
    rng = np.random.default_rng(seed)
    k = len(MODELS)
    topic = rng.integers(0, len(TOPICS), n)
    difficulty = rng.standard_normal(n)
    logit = SKILL[:, topic].T - 1.2 * difficulty[:, None]
    p = 1.0 / (1.0 + np.exp(-logit))
    quality = (rng.random((n, k)) < p).astype(np.float64)
    # The confidence is the log of a noisy probability that tracks correctness.
    signal = 1.5 * (2 * quality - 1) + 0.5 * logit + rng.normal(0.0, 1.0, (n, k))
    confidence = -np.log1p(np.exp(-signal))
    queries, answers = [], []
    for i in range(n):
        words = list(TOPICS[topic[i]]) + [f"w{int(v)}" for v in rng.integers(0, 50, 6)]
        rng.shuffle(words)
        text = " ".join(words) + f" item {i}"
        queries.append({"text": text})
        row = []
        for j in range(k):
            parsed = "A" if quality[i, j] else str(rng.choice(["B", "C", "D"]))
            row.append(
                ModelAnswer(
                    text=f"The answer is {parsed}" + " because" * int(rng.integers(0, 5)),
                    parsed=parsed,
                    confidence=float(confidence[i, j]),
                    cost=float(COST[j] * (1 + 0.1 * len(text) / 50)),
                )
            )
        answers.append(row)
    cost = np.array([[a.cost for a in row] for row in answers])
    return {
        "queries": queries,
        "answers": answers,
        "quality": quality,
        "cost": cost,
        "confidence": confidence,
        "models": MODELS,
    }
