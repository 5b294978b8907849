"""The paper's evaluation metric: area under the cost–quality curve (docs/algorithm.md §10).

A strategy fitted at several budgets gives one point ``(mean test cost, mean test quality)``
per budget. Its AUC is the area under the piecewise-linear curve through those points over the
cost range of the single models, divided by the width of that range:

* ``c_min`` / ``c_max``: the lowest / highest mean test cost of the single models;
* before the first point the curve starts at ``(c_min, worst single-model quality)``;
* after the last point it stays flat at the last point's quality.

All AUC functions here return a **fraction** (a mean quality, in the units of quality);
the paper reports it ×100 — use :func:`as_percent` for display. Budgets are 10 points per
segment of the single models' upper hull (:func:`budget_grid`); the "linear" baseline is that
hull itself (:func:`linear_baseline_auc`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..validation import check_int, check_number
from ..validation import float_array as finite_array

__all__ = [
    "as_percent",
    "auc",
    "auc_from_queries",
    "bootstrap_auc",
    "budget_grid",
    "linear_baseline_auc",
    "upper_hull",
]


def _vector(value: ArrayLike, name: str) -> NDArray[np.float64]:
    return finite_array(value, name, 1)


def _pair(
    costs: ArrayLike, qualities: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    c = _vector(costs, "costs")
    q = _vector(qualities, "qualities")
    if c.shape != q.shape:
        raise ValueError(
            f"costs and qualities must have the same length, got {c.size} and {q.size}"
        )
    if c.size == 0:
        raise ValueError("need at least one (cost, quality) point")
    return c, q


def as_percent(value: float) -> float:
    """An AUC (or any fraction) ×100, the scale the paper reports."""
    return 100.0 * float(value)


# --------------------------------------------------------------------------- hull and budgets


def upper_hull(costs: ArrayLike, qualities: ArrayLike) -> NDArray[np.int64]:
    """Indices of the single models on the upper (concave, non-decreasing) cost–quality hull.

    A model is kept unless it is strictly below the chord between two other models or strictly
    dominated (another model is cheaper and better) — the reference's
    ``remove_redundant_models``. Consequences: models lying exactly on a hull segment
    (collinear) are **kept**; a more expensive model of equal quality at the end is kept
    (a flat last segment); of several identical ``(cost, quality)`` points only the first is
    kept, and of several models with the same cost only the best (first among equals).

    Returns
    -------
    ndarray of int
        Indices into ``costs``, ordered by increasing cost (quality is then non-decreasing and
        the slopes between consecutive hull models are non-increasing).
    """
    c, q = _pair(costs, qualities)
    # cost ascending, quality descending, index ascending: the first of each cost is its best.
    order = np.lexsort((np.arange(c.size), -q, c))
    candidates: list[int] = []
    best = -np.inf
    for i in order:
        if candidates and c[i] == c[candidates[-1]]:
            continue  # same cost as a better (or equal, earlier) model
        if q[i] < best:
            continue  # strictly dominated by a cheaper model
        best = max(best, q[i])
        candidates.append(int(i))
    hull: list[int] = []
    for i in candidates:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is strictly below the chord a -> i  <=>  cross product > 0
            cross = (c[b] - c[a]) * (q[i] - q[a]) - (q[b] - q[a]) * (c[i] - c[a])
            scale = max(abs((c[b] - c[a]) * (q[i] - q[a])), abs((q[b] - q[a]) * (c[i] - c[a])))
            if cross > 1e-12 * scale:
                hull.pop()
            else:
                break
        hull.append(i)
    return np.asarray(hull, dtype=np.int64)


def budget_grid(
    costs: ArrayLike, qualities: ArrayLike, per_segment: int = 10
) -> NDArray[np.float64]:
    """Budgets: ``per_segment`` points per segment between consecutive upper-hull models.

    Mirrors the reference: ``np.linspace(c_i, c_{i+1}, per_segment)`` for each pair of
    consecutive hull models (**both endpoints included**), concatenated; the duplicated
    segment boundaries are then removed, so ``h`` hull models give
    ``(h - 1) * (per_segment - 1) + 1`` increasing budgets from the cheapest to the most
    expensive hull model. One hull model gives its cost alone.
    """
    per_segment = check_int(per_segment, "per_segment (it includes both endpoints)", 2)
    c, _ = _pair(costs, qualities)
    hull_costs = c[upper_hull(costs, qualities)]
    if hull_costs.size == 1:
        return hull_costs.copy()
    grid = np.concatenate(
        [
            np.linspace(hull_costs[i], hull_costs[i + 1], int(per_segment))
            for i in range(hull_costs.size - 1)
        ]
    )
    return np.unique(grid)


# --------------------------------------------------------------------------- AUC


def auc(
    points_cost: ArrayLike,
    points_quality: ArrayLike,
    c_min: float,
    c_max: float,
    start_quality: float,
) -> float:
    """Normalised area under a cost–quality curve over ``[c_min, c_max]`` (a fraction).

    The points are sorted by cost (ties by quality) and joined linearly. If the first point
    costs more than ``c_min``, the curve starts at ``(c_min, start_quality)``; after the last
    point it stays at the last quality up to ``c_max``. Points outside ``[c_min, c_max]`` shape
    the curve but only the part inside is integrated. The area is divided by
    ``c_max - c_min``, so a flat curve at quality ``y`` scores ``y``.

    Returns
    -------
    float
        The AUC as a fraction (×100 with :func:`as_percent` for the paper's scale).
    """
    x, y = _pair(points_cost, points_quality)
    lo, hi, start = float(c_min), float(c_max), float(start_quality)
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(start)):
        raise ValueError("c_min, c_max and start_quality must be finite")
    if not hi > lo:
        raise ValueError(f"c_max must exceed c_min, got c_min={lo}, c_max={hi}")
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    if x[0] > lo:
        x = np.concatenate([[lo], x])
        y = np.concatenate([[start], y])
    if x[-1] < hi:
        x = np.concatenate([x, [hi]])
        y = np.concatenate([y, [y[-1]]])
    area = 0.0
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:]):
        a, b = max(x0, lo), min(x1, hi)
        if b <= a:
            continue  # zero-width (a vertical jump) or outside the range
        slope = (y1 - y0) / (x1 - x0)
        ya = y0 + slope * (a - x0)
        yb = y0 + slope * (b - x0)
        area += 0.5 * (ya + yb) * (b - a)
    return float(area / (hi - lo))


def linear_baseline_auc(single_costs: ArrayLike, single_qualities: ArrayLike) -> float:
    """AUC of the "linear" baseline: the single models' upper hull taken as the curve.

    ``c_min``/``c_max`` are the lowest/highest single-model costs and the start quality the
    worst single model's quality (as for every method), so the value is comparable to
    :func:`auc` of a strategy evaluated against the same single models.
    """
    c, q = _pair(single_costs, single_qualities)
    hull = upper_hull(c, q)
    return auc(c[hull], q[hull], c.min(), c.max(), q.min())


def _per_query(value: ArrayLike, name: str, ndim: int) -> NDArray[np.float64]:
    return finite_array(value, name, ndim)


def _check_per_query(
    curve_costs: ArrayLike,
    curve_qualities: ArrayLike,
    single_costs: ArrayLike,
    single_qualities: ArrayLike,
) -> tuple[NDArray[np.float64], ...]:
    cc = _per_query(curve_costs, "curve_costs", 2)
    cq = _per_query(curve_qualities, "curve_qualities", 2)
    sc = _per_query(single_costs, "single_costs", 2)
    sq = _per_query(single_qualities, "single_qualities", 2)
    if cc.shape != cq.shape:
        raise ValueError(f"curve_costs {cc.shape} and curve_qualities {cq.shape} must match")
    if sc.shape != sq.shape:
        raise ValueError(f"single_costs {sc.shape} and single_qualities {sq.shape} must match")
    if cc.shape[0] == 0 or cc.shape[1] == 0:
        raise ValueError(
            "curve_costs must be (n_budgets, n_queries) with n_budgets, n_queries >= 1"
        )
    if sc.shape[0] != cc.shape[1]:
        raise ValueError(
            f"single_costs must be (n_queries, k) with n_queries = {cc.shape[1]} "
            f"(the curve's queries), got {sc.shape}"
        )
    if sc.shape[1] < 1:
        raise ValueError("need at least one single model")
    return cc, cq, sc, sq


def _auc_from_means(
    curve_cost: NDArray[np.float64],
    curve_quality: NDArray[np.float64],
    single_cost: NDArray[np.float64],
    single_quality: NDArray[np.float64],
) -> float:
    return auc(
        curve_cost, curve_quality, single_cost.min(), single_cost.max(), single_quality.min()
    )


def auc_from_queries(
    curve_costs: ArrayLike,
    curve_qualities: ArrayLike,
    single_costs: ArrayLike,
    single_qualities: ArrayLike,
) -> float:
    """AUC from per-query outcomes (the point estimate that :func:`bootstrap_auc` resamples).

    Parameters
    ----------
    curve_costs, curve_qualities : array_like, shape (n_budgets, n_queries)
        For each budget, the cost paid and the quality obtained by the strategy on each test
        query.
    single_costs, single_qualities : array_like, shape (n_queries, k)
        Each single model's cost and quality on the same test queries; their means give
        ``c_min``, ``c_max`` and the start quality.
    """
    cc, cq, sc, sq = _check_per_query(curve_costs, curve_qualities, single_costs, single_qualities)
    return _auc_from_means(cc.mean(axis=1), cq.mean(axis=1), sc.mean(axis=0), sq.mean(axis=0))


def bootstrap_auc(
    curve_costs: ArrayLike,
    curve_qualities: ArrayLike,
    single_costs: ArrayLike,
    single_qualities: ArrayLike,
    n_boot: int = 1000,
    seed: Any = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of :func:`auc_from_queries` over test queries.

    Each replicate draws ``n_queries`` test queries with replacement — **the same draw for
    every budget and for the single models** — recomputes the curve's mean points, ``c_min``,
    ``c_max`` and the start quality from the resampled single models, and the AUC. The
    strategies are not refitted (fitting used the training set only).

    Parameters
    ----------
    curve_costs, curve_qualities, single_costs, single_qualities
        As for :func:`auc_from_queries`.
    n_boot : int
        Number of bootstrap replicates.
    seed : int or numpy.random.Generator
        Seed of ``numpy.random.default_rng``; the result is deterministic under it.
    alpha : float
        The interval covers ``1 - alpha`` (percentiles ``alpha/2`` and ``1 - alpha/2``).

    Returns
    -------
    (low, high) : tuple of float
        Interval bounds, fractions like :func:`auc`.
    """
    cc, cq, sc, sq = _check_per_query(curve_costs, curve_qualities, single_costs, single_qualities)
    n_boot = check_int(n_boot, "n_boot", 2)
    alpha = check_number(alpha, "alpha", 0.0, 1.0)
    if alpha in (0.0, 1.0):
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = cc.shape[1]
    # All per-query columns side by side, so one weight matrix resamples them together.
    stacked = np.concatenate([cc, cq, sc.T, sq.T], axis=0)  # (2 b + 2 k, n)
    b, k = cc.shape[0], sc.shape[1]
    values = np.empty(int(n_boot))
    chunk = max(1, min(int(n_boot), 2_000_000 // max(n, 1)))
    done = 0
    while done < n_boot:
        m = min(chunk, int(n_boot) - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64)
        means = counts @ stacked.T / n  # (m, 2 b + 2 k)
        for r in range(m):
            row = means[r]
            values[done + r] = _auc_from_means(
                row[:b], row[b : 2 * b], row[2 * b : 2 * b + k], row[2 * b + k :]
            )
        done += m
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)
