"""Cost–quality evaluation of the strategies on logged data (docs/algorithm.md §10).

For every strategy and every budget of the grid, fit on the training queries, replay on the
test queries, and collect per-query cost and quality. The curves give the AUC of §10, with
bootstrap intervals over test queries (or none, with ``n_boot=0``); the single models' upper hull
is the "linear" baseline.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..strategies import Cascade, CascadeRouter, Router, Strategy, ThresholdCascade
from ..validation import check_int, check_rows
from .datasets import Dataset
from .metrics import (
    auc_from_queries,
    bootstrap_auc,
    budget_grid,
    linear_baseline_auc,
    upper_hull,
)
from .settings import STRATEGY_LABELS
from .tables import TwoPhaseTables

log = logging.getLogger(__name__)

__all__ = ["STRATEGY_LABELS", "Curve", "Evaluation", "evaluate", "make_strategy"]

#: The interval of a curve when the bootstrap is switched off (``n_boot=0``).
NO_INTERVAL = (math.nan, math.nan)


def make_strategy(
    key: str,
    tables: TwoPhaseTables,
    models: Sequence[str],
    *,
    max_depth: int | None = 5,
    seed: int = 0,
    quality_bounds: tuple[float, float] | None = None,
) -> Strategy:
    """One strategy over two-phase estimate tables, in the paper's configuration.

    The models are taken in the given order (the evaluation passes them sorted by mean
    training cost). Cascade routing uses ``max_depth`` and ``force_order=False`` as in the
    paper; the cascades may run every model.
    """
    qe = tables.quality_estimator()
    ce = tables.cost_estimator()
    common: dict[str, Any] = {"order": "given", "seed": seed, "quality_bounds": quality_bounds}
    if key == "routing":
        return Router(qe, ce, models, **common)
    if key == "threshold_cascade":
        return ThresholdCascade(qe, ce, models, **common)
    if key == "optimal_cascade":
        return Cascade(qe, ce, models, **common)
    if key == "cascade_routing":
        return CascadeRouter(qe, ce, models, max_depth=max_depth, force_order=False, **common)
    raise ValueError(f"unknown strategy {key!r}; use one of {list(STRATEGY_LABELS)}")


@dataclass
class Curve:
    """One strategy's cost–quality curve on the test queries."""

    strategy: str
    budgets: NDArray[np.float64]
    cost: NDArray[np.float64]
    quality: NDArray[np.float64]
    auc: float
    ci: tuple[float, float]
    fit_seconds: float
    replay_seconds: float
    statuses: list[str]
    lambdas: list[list[float]]
    gammas: list[float]
    per_query_cost: NDArray[np.float64] = field(repr=False)
    per_query_quality: NDArray[np.float64] = field(repr=False)


@dataclass
class Evaluation:
    """Curves of several strategies on one dataset, plus the single models and the baseline."""

    name: str
    models: tuple[str, ...]
    n_train: int
    n_test: int
    single_cost: NDArray[np.float64]
    single_quality: NDArray[np.float64]
    linear_auc: float
    curves: dict[str, Curve]
    settings: dict[str, Any]
    seconds: float

    def auc_table(self) -> list[tuple[str, float, float, float]]:
        """Rows ``(strategy, AUC×100, CI low×100, CI high×100)``; linear first."""
        rows = [("linear", 100 * self.linear_auc, math.nan, math.nan)]
        for key, curve in self.curves.items():
            rows.append((key, 100 * curve.auc, 100 * curve.ci[0], 100 * curve.ci[1]))
        return rows

    def format_table(self) -> str:
        """A plain-text table of the AUCs with their intervals."""
        level = int(round(100 * (1 - self.settings.get("alpha", 0.05))))
        ci_head = f"{level}% bootstrap CI" if self.settings.get("n_boot", 1) else "(no bootstrap)"
        lines = [
            f"{self.name}: {len(self.models)} models, "
            f"{self.n_train} train / {self.n_test} test queries",
            f"{'strategy':<20} {'AUC x100':>9}   {ci_head:>20}",
        ]
        for key, value, low, high in self.auc_table():
            label = STRATEGY_LABELS.get(key, key)
            ci = "" if math.isnan(low) else f"[{low:6.2f}, {high:6.2f}]"
            lines.append(f"{label:<20} {value:9.2f}   {ci:>20}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything measured, as JSON-ready data."""
        return {
            "dataset": self.name,
            "models": list(self.models),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "single_models": [
                {"model": m, "cost": float(c), "quality": float(q)}
                for m, c, q in zip(self.models, self.single_cost, self.single_quality)
            ],
            "linear_auc": self.linear_auc,
            "strategies": {
                key: {
                    "auc": c.auc,
                    "ci": None if math.isnan(c.ci[0]) else list(c.ci),
                    "points": [
                        {
                            "budget": float(b),
                            "cost": float(x),
                            "quality": float(y),
                            "status": s,
                            "lambdas": lam,
                            "gamma": g,
                        }
                        for b, x, y, s, lam, g in zip(
                            c.budgets, c.cost, c.quality, c.statuses, c.lambdas, c.gammas
                        )
                    ],
                    "fit_seconds": c.fit_seconds,
                    "replay_seconds": c.replay_seconds,
                }
                for key, c in self.curves.items()
            },
            "settings": self.settings,
            "seconds": self.seconds,
        }

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    def plot(self, path: str | Path, title: str | None = None) -> None:
        """Write a PNG of every strategy's curve, the single models and the hull."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=120)
        hull = upper_hull(self.single_cost, self.single_quality)
        ax.plot(
            self.single_cost[hull],
            self.single_quality[hull],
            "k--",
            lw=1,
            label=f"linear ({100 * self.linear_auc:.2f})",
        )
        ax.scatter(self.single_cost, self.single_quality, c="k", s=18, zorder=3)
        for m, x, y in zip(self.models, self.single_cost, self.single_quality):
            ax.annotate(
                m.split("/")[-1][:22],
                (x, y),
                fontsize=6,
                xytext=(3, -8),
                textcoords="offset points",
            )
        for key, c in self.curves.items():
            order = np.argsort(c.cost, kind="stable")
            ax.plot(
                c.cost[order],
                c.quality[order],
                marker=".",
                ms=4,
                lw=1.3,
                label=f"{STRATEGY_LABELS.get(key, key)} ({100 * c.auc:.2f})",
            )
        ax.set_xlabel("mean cost per query (test)")
        ax.set_ylabel("mean quality (test)")
        ax.set_title(title or f"{self.name}: cost–quality (AUC x100 in legend)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(path, format="png")
        plt.close(fig)


def evaluate(
    dataset: Dataset,
    tables: TwoPhaseTables,
    train_rows: NDArray[np.int64],
    test_rows: NDArray[np.int64],
    *,
    strategies: Sequence[str] = tuple(STRATEGY_LABELS),
    per_segment: int = 10,
    max_depth: int | None = 5,
    lambdas: str = "constant",
    n_trials: int = 200,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_threads: int = 1,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    quality_bounds: tuple[float, float] | None = None,
) -> Evaluation:
    """Fit each strategy on ``train_rows`` at every budget and replay it on ``test_rows``.

    Parameters
    ----------
    dataset : Dataset
        True quality and cost (rows are queries, columns the models).
    tables : TwoPhaseTables
        Ex-ante / post-hoc estimates for every row of ``dataset`` (queries are row indices).
    train_rows, test_rows : array of int
        Rows to fit on and to evaluate on.
    strategies : sequence of str
        Keys of :data:`STRATEGY_LABELS`.
    per_segment : int
        Budgets per segment of the single models' upper hull (test means, as the reference).
    max_depth : int or None
        Largest supermodel of cascade routing.
    lambdas : {"constant", "per_step"}
        How multipliers are fitted (see :meth:`Strategy.fit`).
    n_boot, alpha, seed
        Bootstrap replicates and level over test queries (``n_boot=0``: no intervals, the
        curves' ``ci`` is ``(nan, nan)``); ``seed`` also seeds the fits.
    progress : callable, optional
        ``progress(done, total)`` after each (strategy, budget) fit.
    quality_bounds : (float, float), optional
        Clip quality samples in expected maxima (see :class:`~cascade_routing.Strategy`).
    """
    started = time.perf_counter()
    for key in strategies:
        if key not in STRATEGY_LABELS:
            raise ValueError(f"unknown strategy {key!r}; use one of {list(STRATEGY_LABELS)}")
    n_boot = check_int(n_boot, "n_boot (0 switches the intervals off)", 0)
    if n_boot == 1:
        raise ValueError("n_boot must be 0 (no intervals) or at least 2, got 1")
    train = check_rows(train_rows, dataset.n_queries, "train_rows")
    test = check_rows(test_rows, dataset.n_queries, "test_rows")
    if train.size == 0 or test.size == 0:
        raise ValueError("train_rows and test_rows must both be non-empty")
    if tables.n_queries != dataset.n_queries or tables.n_models != dataset.n_models:
        raise ValueError(
            f"tables cover {tables.n_queries} x {tables.n_models}, the dataset "
            f"{dataset.n_queries} x {dataset.n_models}; estimate every row and model"
        )
    # Models in ascending mean training cost: the order of cascades (docs/algorithm.md §1).
    perm = np.argsort(dataset.cost[train].mean(axis=0), kind="stable")
    data = dataset.select_models([dataset.models[i] for i in perm])
    tab = tables.select_models(perm)
    models = data.models
    k = len(models)
    answers = [[True] * k] * dataset.n_queries  # every model's answer is in the log
    q_train, c_train = data.quality[train], data.cost[train]
    q_test, c_test = data.quality[test], data.cost[test]
    single_cost, single_quality = c_test.mean(axis=0), q_test.mean(axis=0)
    # Budgets are evaluation points on the test hull, as the reference places them; every
    # fit sees only training data.
    budgets = budget_grid(single_cost, single_quality, per_segment)
    total = len(strategies) * len(budgets)
    done = 0
    curves: dict[str, Curve] = {}
    # Every strategy is built before any is fitted: a configuration its constructor refuses
    # (say, a search over the work cap) fails at once, not after the others' fits.
    built = {
        key: make_strategy(
            key, tab, models, max_depth=max_depth, seed=seed, quality_bounds=quality_bounds
        )
        for key in strategies
    }
    for key, strat in built.items():
        pq_cost = np.empty((len(budgets), test.size))
        pq_quality = np.empty((len(budgets), test.size))
        statuses, lams, gammas = [], [], []
        fit_s = replay_s = 0.0
        for b, budget in enumerate(budgets):
            t0 = time.perf_counter()
            strat.fit(
                train,
                [answers[0]] * train.size,
                q_train,
                c_train,
                budget=float(budget),
                lambdas=lambdas,
                n_trials=n_trials,
                seed=seed,
                n_threads=n_threads,
            )
            t1 = time.perf_counter()
            res = strat.replay(test, [answers[0]] * test.size, q_test, c_test, n_threads=n_threads)
            replay_s += time.perf_counter() - t1
            fit_s += t1 - t0
            pq_cost[b] = res.cost
            pq_quality[b] = res.quality
            statuses.append(strat.fit_info_["status"])
            assert strat.lambdas_ is not None
            lams.append([float(x) for x in strat.lambdas_])
            gammas.append(float(strat.gamma_))
            done += 1
            if progress is not None:
                progress(done, total)
        point = auc_from_queries(pq_cost, pq_quality, c_test, q_test)
        ci = NO_INTERVAL
        if n_boot:
            ci = bootstrap_auc(
                pq_cost, pq_quality, c_test, q_test, n_boot=n_boot, seed=seed, alpha=alpha
            )
        curves[key] = Curve(
            key,
            budgets.copy(),
            pq_cost.mean(axis=1),
            pq_quality.mean(axis=1),
            point,
            ci,
            fit_s,
            replay_s,
            statuses,
            lams,
            gammas,
            pq_cost,
            pq_quality,
        )
        log.info(
            "%s: AUC %.4f [%.4f, %.4f] (fit %.2fs, replay %.2fs)",
            key,
            point,
            ci[0],
            ci[1],
            fit_s,
            replay_s,
        )
    return Evaluation(
        name=name or dataset.name,
        models=tuple(models),
        n_train=int(train.size),
        n_test=int(test.size),
        single_cost=single_cost,
        single_quality=single_quality,
        linear_auc=linear_baseline_auc(single_cost, single_quality),
        curves=curves,
        settings={
            "strategies": list(strategies),
            "per_segment": per_segment,
            "max_depth": max_depth,
            "lambdas": lambdas,
            "n_boot": n_boot,
            "alpha": alpha,
            "seed": seed,
            "quality_bounds": None if quality_bounds is None else list(quality_bounds),
            "budgets": [float(b) for b in budgets],
        },
        seconds=time.perf_counter() - started,
    )
