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
    auc,
    auc_from_queries,
    bootstrap_auc,
    budget_grid,
    linear_baseline_auc,
    upper_hull,
)
from .settings import STRATEGY_LABELS
from .tables import TwoPhaseTables

log = logging.getLogger(__name__)

__all__ = [
    "STRATEGY_LABELS",
    "Curve",
    "Evaluation",
    "SplitSummary",
    "build_strategy",
    "evaluate",
    "evaluate_strategies",
    "make_strategy",
    "summarize_splits",
]

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
    return build_strategy(
        key,
        tables.quality_estimator(),
        tables.cost_estimator(),
        models,
        max_depth=max_depth,
        seed=seed,
        quality_bounds=quality_bounds,
    )


def build_strategy(
    key: str,
    quality_estimator: Any,
    cost_estimator: Any,
    models: Sequence[str],
    *,
    max_depth: int | None = 5,
    seed: int = 0,
    quality_bounds: tuple[float, float] | None = None,
) -> Strategy:
    """One strategy over any estimators, configured as :func:`make_strategy`."""
    qe, ce = quality_estimator, cost_estimator
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


def _no_rows() -> NDArray[np.float64]:
    return np.zeros((0, 0))


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
    per_query_single_cost: NDArray[np.float64] = field(repr=False, default_factory=_no_rows)
    per_query_single_quality: NDArray[np.float64] = field(repr=False, default_factory=_no_rows)

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
    k = data.n_models
    return evaluate_strategies(
        data,
        lambda key: make_strategy(
            key, tab, data.models, max_depth=max_depth, seed=seed, quality_bounds=quality_bounds
        ),
        train,
        test,
        [[True] * k] * dataset.n_queries,  # every model's answer is in the log
        strategies=strategies,
        per_segment=per_segment,
        max_depth=max_depth,
        lambdas=lambdas,
        n_trials=n_trials,
        n_boot=n_boot,
        alpha=alpha,
        seed=seed,
        n_threads=n_threads,
        name=name,
        progress=progress,
        quality_bounds=quality_bounds,
        started=started,
    )


def evaluate_strategies(
    data: Dataset,
    build: Callable[[str], Strategy],
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    answers: Sequence[Sequence[Any]],
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
    started: float | None = None,
) -> Evaluation:
    """The loop of :func:`evaluate` over strategies built by ``build(key)``.

    The queries the strategies see are the row indices of ``data`` (whose models are in
    cascade order); ``answers[r]`` is row ``r``'s answers of every model. Arguments are
    checked by the callers (:func:`evaluate`,
    :func:`~cascade_routing.experiments.learned_evaluation.evaluate_learned`).
    """
    started = time.perf_counter() if started is None else started
    models = data.models
    q_train, c_train = data.quality[train], data.cost[train]
    q_test, c_test = data.quality[test], data.cost[test]
    a_train = [answers[int(r)] for r in train]
    a_test = [answers[int(r)] for r in test]
    single_cost, single_quality = c_test.mean(axis=0), q_test.mean(axis=0)
    # Budgets are evaluation points on the test hull, as the reference places them; every
    # fit sees only training data.
    budgets = budget_grid(single_cost, single_quality, per_segment)
    total = len(strategies) * len(budgets)
    done = 0
    curves: dict[str, Curve] = {}
    # Every strategy is built before any is fitted: a configuration its constructor refuses
    # (say, a search over the work cap) fails at once, not after the others' fits.
    built = {key: build(key) for key in strategies}
    for key, strat in built.items():
        pq_cost = np.empty((len(budgets), test.size))
        pq_quality = np.empty((len(budgets), test.size))
        statuses, lams, gammas = [], [], []
        fit_s = replay_s = 0.0
        for b, budget in enumerate(budgets):
            t0 = time.perf_counter()
            strat.fit(
                train,
                a_train,
                q_train,
                c_train,
                budget=float(budget),
                lambdas=lambdas,
                n_trials=n_trials,
                seed=seed,
                n_threads=n_threads,
            )
            t1 = time.perf_counter()
            res = strat.replay(test, a_test, q_test, c_test, n_threads=n_threads)
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
        name=name or data.name,
        models=tuple(models),
        n_train=int(train.size),
        n_test=int(test.size),
        single_cost=single_cost,
        single_quality=single_quality,
        linear_auc=linear_baseline_auc(single_cost, single_quality),
        curves=curves,
        per_query_single_cost=c_test,
        per_query_single_quality=q_test,
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


# --------------------------------------------------------------------------- several splits


@dataclass
class SplitSummary:
    """The mean AUC of each method over several splits, with bootstrap intervals.

    ``auc[m]`` is the mean over splits of method ``m``'s AUC (``"linear"`` included), a
    fraction; ``ci[m]`` its percentile bootstrap interval: each replicate resamples the test
    queries of every split independently (the same draw for every method, budget and single
    model of a split) and averages the splits' AUCs. ``gap`` is cascade routing minus the best
    other method (by mean AUC, named in ``best_other``), with its interval from the same
    paired replicates; ``None`` without cascade routing or another method.
    """

    name: str
    seeds: list[int]
    per_split: dict[str, list[float]]
    auc: dict[str, float]
    ci: dict[str, tuple[float, float]]
    best_other: str | None
    gap: float | None
    gap_ci: tuple[float, float]
    n_boot: int
    alpha: float

    def format_table(self) -> str:
        """AUC ×100 per method: mean over splits, interval, each split; then CR − best other."""
        level = int(round(100 * (1 - self.alpha)))
        ci_head = f"{level}% bootstrap CI" if self.n_boot else "(no bootstrap)"
        seeds = ",".join(str(s) for s in self.seeds)
        lines = [
            f"mean AUC x100 over {len(self.seeds)} split(s) (seeds {seeds})",
            f"{'strategy':<20} {'AUC x100':>9}   {ci_head:>20}   per split",
        ]
        for key, value in self.auc.items():
            low, high = self.ci[key]
            ci = "" if math.isnan(low) else f"[{100 * low:6.2f}, {100 * high:6.2f}]"
            each = " ".join(f"{100 * v:.2f}" for v in self.per_split[key])
            label = STRATEGY_LABELS.get(key, key)
            lines.append(f"{label:<20} {100 * value:9.2f}   {ci:>20}   {each}")
        if self.gap is not None and self.best_other is not None:
            low, high = self.gap_ci
            ci = "" if math.isnan(low) else f"[{100 * low:+6.2f}, {100 * high:+6.2f}]"
            other = STRATEGY_LABELS.get(self.best_other, self.best_other)
            lines.append(f"{'CR - best other':<20} {100 * self.gap:+9.2f}   {ci:>20}   ({other})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        def interval(pair: tuple[float, float]) -> list[float] | None:
            return None if math.isnan(pair[0]) else [float(pair[0]), float(pair[1])]

        return {
            "dataset": self.name,
            "seeds": list(self.seeds),
            "auc": dict(self.auc),
            "ci": {key: interval(pair) for key, pair in self.ci.items()},
            "per_split": {key: list(v) for key, v in self.per_split.items()},
            "best_other": self.best_other,
            "cr_minus_best_other": self.gap,
            "cr_minus_best_other_ci": interval(self.gap_ci),
            "n_boot": self.n_boot,
            "alpha": self.alpha,
        }


def summarize_splits(
    evaluations: Sequence[Evaluation],
    seeds: Sequence[int],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> SplitSummary:
    """Mean AUC over the splits of ``evaluations`` (one per seed) with bootstrap intervals.

    See :class:`SplitSummary`. Every evaluation must cover the same strategies.
    """
    if not evaluations or len(evaluations) != len(seeds):
        raise ValueError("give one evaluation per seed (at least one)")
    n_boot = check_int(n_boot, "n_boot (0 switches the intervals off)", 0)
    if n_boot == 1:
        raise ValueError("n_boot must be 0 (no intervals) or at least 2, got 1")
    keys = ["linear", *evaluations[0].curves]
    if any(list(ev.curves) != keys[1:] for ev in evaluations):
        raise ValueError("every split must evaluate the same strategies")
    per_split = {
        key: [ev.linear_auc if key == "linear" else ev.curves[key].auc for ev in evaluations]
        for key in keys
    }
    mean = {key: float(np.mean(values)) for key, values in per_split.items()}
    others = [key for key in keys if key != "cascade_routing"]
    best = max(others, key=lambda key: mean[key]) if "cascade_routing" in keys else None
    gap = None if best is None else mean["cascade_routing"] - mean[best]
    ci = {key: NO_INTERVAL for key in keys}
    gap_ci = NO_INTERVAL
    if n_boot:
        reps = np.zeros((n_boot, len(keys)))
        rng = np.random.default_rng(seed)
        for ev in evaluations:
            reps += _replicates(ev, keys, n_boot, rng) / len(evaluations)
        q = [alpha / 2.0, 1.0 - alpha / 2.0]
        for c, key in enumerate(keys):
            low, high = np.quantile(reps[:, c], q)
            ci[key] = (float(low), float(high))
        if best is not None:
            diff = reps[:, keys.index("cascade_routing")] - reps[:, keys.index(best)]
            low, high = np.quantile(diff, q)
            gap_ci = (float(low), float(high))
    return SplitSummary(
        name=evaluations[0].name,
        seeds=[int(s) for s in seeds],
        per_split=per_split,
        auc=mean,
        ci=ci,
        best_other=best,
        gap=gap,
        gap_ci=gap_ci,
        n_boot=n_boot,
        alpha=alpha,
    )


def _replicates(
    ev: Evaluation, keys: Sequence[str], n_boot: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``(n_boot, len(keys))`` AUCs of one split, each replicate one draw of its test queries."""
    first = next(iter(ev.curves.values()))
    n = first.per_query_cost.shape[1]
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64) / n
    single_c = counts @ ev.per_query_single_cost  # (n_boot, k)
    single_q = counts @ ev.per_query_single_quality
    out = np.empty((n_boot, len(keys)))
    for c, key in enumerate(keys):
        if key == "linear":
            for r in range(n_boot):
                out[r, c] = linear_baseline_auc(single_c[r], single_q[r])
            continue
        curve = ev.curves[key]
        cost = counts @ curve.per_query_cost.T  # (n_boot, n_budgets)
        quality = counts @ curve.per_query_quality.T
        for r in range(n_boot):
            out[r, c] = auc(
                cost[r], quality[r], single_c[r].min(), single_c[r].max(), single_q[r].min()
            )
    return out
