"""A drift simulation of online budget control on the bundled RouterBench data.

A :class:`~cascade_routing.CascadeRouter` is fitted to a budget on traffic like the first half
of a stream of queries; halfway through the stream, prompts become ``length_factor`` times
longer (every call costs that much more, and the cost estimates see it) and the query mix
shifts towards code (``mbpp``). The same stream is served three ways:

- ``static``: the fitted policy as is (what a fixed ``λ`` does under drift);
- ``controlled``: the fitted policy with a :class:`~cascade_routing.serve.budget.BudgetController`
  updating ``λ`` after every query (applied in batches of ``batch`` queries, the delay of a
  busy gateway);
- ``static_within_budget``: the best fixed ``λ`` (found in hindsight by bisection) whose spend
  stays within ``1 + tolerance`` of the budget in every window after the warm-up — the best a
  static policy can do under the same per-window budget.

Estimators are simulated as in the paper (docs/algorithm.md): ex ante, each model's accuracy
on the query's benchmark in the training rows, moved towards the true outcome with noise;
post hoc, the true outcome with noise. Run ``python -m cascade_routing.serve.drift``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..estimators import TwoPhaseCost, TwoPhaseQuality
from ..strategies import CascadeRouter
from .budget import BudgetController

__all__ = ["DriftReport", "run_drift_simulation"]

DATA = Path(__file__).resolve().parent.parent / "data" / "routerbench"
MODELS = (
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "meta/llama-2-70b-chat",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
)
MIX_BEFORE = {"arc-challenge": 0.45, "winogrande": 0.45, "mbpp": 0.10}
MIX_AFTER = {"arc-challenge": 0.2, "winogrande": 0.2, "mbpp": 0.6}


@dataclass
class DriftReport:
    """Per-window spend (relative to the budget) and mean quality of each policy."""

    budget: float
    window: int
    warmup: int
    spend: dict[str, list[float]] = field(default_factory=dict)  # mean cost / budget − 1
    quality: dict[str, float] = field(default_factory=dict)
    mean_cost: dict[str, float] = field(default_factory=dict)
    lam_scale: list[float] = field(default_factory=list)  # controller scale per window
    static_lambda: float = 0.0

    def max_abs_error(self, name: str) -> float:
        return max(abs(x) for x in self.spend[name])

    def table(self) -> str:
        lines = [
            f"budget ${self.budget:.6g}/query; windows of {self.window} after a "
            f"{self.warmup}-query warm-up: spend vs budget"
        ]
        names = list(self.spend)
        lines.append("window   " + "".join(f"{n:>22}" for n in names))
        for w in range(len(self.spend[names[0]])):
            lines.append(f"{w:>6}   " + "".join(f"{self.spend[n][w]:>+21.2%} " for n in names))
        lines.append("quality  " + "".join(f"{self.quality[n]:>22.4f}" for n in names))
        lines.append("mean $   " + "".join(f"{self.mean_cost[n]:>22.6g}" for n in names))
        return "\n".join(lines)


def _read(name: str) -> tuple[list[str], NDArray[np.float64], list[str]]:
    with (DATA / name).open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = [header.index(m) for m in MODELS]
    table = np.array([[float(r[c]) if r[c] else math.nan for c in cols] for r in body])
    return [r[2] for r in body], table, header


def run_drift_simulation(
    *,
    n_queries: int = 20_000,
    warmup: int = 2_000,
    window: int = 2_000,
    budget: float = 0.0008,
    length_factor: float = 2.3,
    batch: int = 5,
    tolerance: float = 0.02,
    seed: int = 0,
    n_train: int = 2_000,
    controller: dict[str, Any] | None = None,
) -> DriftReport:
    """Serve one drifting stream with a static and a budget-controlled policy."""
    rng = np.random.default_rng(seed)
    evals, quality, header = _read("quality.csv")
    _, cost, _ = _read("cost_usd.csv")
    complete = np.isfinite(quality).all(axis=1) & np.isfinite(cost).all(axis=1)
    quality, cost = quality[complete], cost[complete]
    n_rows, k = quality.shape
    ev = np.array(evals)[complete]
    train_mask: NDArray[np.bool_] = np.asarray(rng.random(n_rows) < 0.3, dtype=np.bool_)
    test_mask: NDArray[np.bool_] = np.logical_not(train_mask)
    acc = {e: quality[train_mask & (ev == e)].mean(axis=0) for e in MIX_BEFORE}

    def draw(n: int, mix: dict[str, float], pool: NDArray[np.bool_]) -> NDArray[np.int64]:
        names = list(mix)
        which = rng.choice(len(names), size=n, p=[mix[x] for x in names])
        out = np.empty(n, dtype=np.int64)
        for i, name in enumerate(names):
            rows = np.flatnonzero(pool & (ev == name))
            sel = which == i
            out[sel] = rng.choice(rows, size=int(sel.sum()))
        return out

    half = n_queries // 2
    rows = np.concatenate(
        [
            draw(n_train, MIX_BEFORE, train_mask),
            draw(half, MIX_BEFORE, test_mask),
            draw(n_queries - half, MIX_AFTER, test_mask),
        ]
    )
    factor = np.ones(rows.shape[0])
    factor[n_train + half :] = length_factor
    true_q = quality[rows]
    true_c = cost[rows] * factor[:, None]
    prior = np.stack([acc[e] for e in ev[rows]])
    ante = np.clip(prior + 0.4 * (true_q - prior) + rng.normal(0, 0.15, true_q.shape), 0, 1)
    post = np.clip(0.8 * true_q + 0.1 + rng.normal(0, 0.1, true_q.shape), 0, 1)
    qe = TwoPhaseQuality(ante, post, np.full(ante.shape, 0.15**2), np.full(ante.shape, 1e-4))
    ce = TwoPhaseCost(true_c, true_c)
    names = [header[header.index(m)] for m in MODELS]
    router = CascadeRouter(qe, ce, names, max_depth=3, quality_bounds=(0.0, 1.0))
    tr = np.arange(n_train)
    placeholder = [list(names)] * rows.shape[0]
    router.fit(tr, placeholder[:n_train], true_q[tr], true_c[tr], budget=budget)
    base_c, base_e = router._check_fitted()
    base_c, base_e, gamma = base_c.copy(), base_e.copy(), router.gamma_

    stream = np.arange(n_train, rows.shape[0])

    def replay(
        idx: NDArray[np.int64], scale: float
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        router.set_lambdas(
            (base_c * scale).tolist(), lambdas_expensive=(base_e * scale).tolist(), gamma=gamma
        )
        res = router.replay(idx, placeholder[: idx.shape[0]], true_q[idx], true_c[idx])
        return res.cost, res.quality

    report = DriftReport(budget, window, warmup)
    n_windows = (n_queries - warmup) // window

    def windows(costs: NDArray[np.float64]) -> list[float]:
        return [
            float(costs[warmup + w * window : warmup + (w + 1) * window].mean() / budget - 1)
            for w in range(n_windows)
        ]

    c_static, q_static = replay(stream, 1.0)
    report.spend["static"] = windows(c_static)
    report.quality["static"] = float(q_static.mean())
    report.mean_cost["static"] = float(c_static.mean())

    ctl = BudgetController(budget, **(controller or {}))
    costs = np.empty(n_queries)
    quals = np.empty(n_queries)
    for start in range(0, n_queries, batch):
        idx = stream[start : start + batch]
        c, q = replay(idx, ctl.scale)
        costs[start : start + idx.shape[0]] = c
        quals[start : start + idx.shape[0]] = q
        for x in c.tolist():
            ctl.observe(x)
        if (start + batch) % window == 0:
            report.lam_scale.append(ctl.scale)
    report.spend["controlled"] = windows(costs)
    report.quality["controlled"] = float(quals.mean())
    report.mean_cost["controlled"] = float(costs.mean())

    # The best static λ that keeps every window within the tolerance (bisection on log scale).
    lo, hi = -8.0, 8.0
    best: tuple[NDArray[np.float64], NDArray[np.float64], float] | None = None
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        c, q = replay(stream, math.exp(mid))
        if max(windows(c)) <= tolerance:
            best, hi = (c, q, mid), mid
        else:
            lo = mid
    assert best is not None
    report.spend["static_within_budget"] = windows(best[0])
    report.quality["static_within_budget"] = float(best[1].mean())
    report.mean_cost["static_within_budget"] = float(best[0].mean())
    report.static_lambda = math.exp(best[2])
    router.set_lambdas(base_c.tolist(), lambdas_expensive=base_e.tolist(), gamma=gamma)
    return report


if __name__ == "__main__":  # pragma: no cover - a report for people
    import time

    t0 = time.perf_counter()
    rep = run_drift_simulation()
    print(rep.table())
    print(f"controller scale per window: {[round(s, 3) for s in rep.lam_scale]}")
    print(f"({time.perf_counter() - t0:.1f} s)")
