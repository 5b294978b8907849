"""Two-phase estimate tables: what every estimator pipeline of the experiment returns.

Both the simulated estimators (:mod:`.simulation`) and the estimators fitted on real data
(:mod:`.real_estimators`) produce a :class:`TwoPhaseTables`, which turns into the table-backed
estimators of :mod:`cascade_routing.estimators` (docs/estimators.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..estimators import ConstantCost, TwoPhaseCost, TwoPhaseQuality
from ..validation import check_rows, float_array

logger = logging.getLogger(__name__)

__all__ = [
    "SCALE_GRID",
    "TwoPhaseTables",
    "fit_variance_scale",
    "with_reference_variance_quirk",
    "with_variance_scale",
]

_FIELDS = ("ante_quality", "post_quality", "ante_var", "post_var", "ante_cost", "post_cost")


def table(value: ArrayLike, name: str) -> NDArray[np.float64]:
    """A finite ``(queries, models)`` float table."""
    return float_array(value, name, 2, layout="queries x models")


@dataclass(frozen=True, eq=False)
class TwoPhaseTables:
    """Ex-ante and post-hoc quality and cost estimates for every query (row) and model.

    Attributes
    ----------
    ante_quality, post_quality : ndarray, shape (n, k)
        Quality estimates before / after the model has run on the query.
    ante_var, post_var : ndarray, shape (n, k)
        Variances of those estimates (``post_var`` is
        :data:`~cascade_routing.estimators.RUN_VARIANCE` for the simulated and real-data
        estimators of the experiment).
    ante_cost, post_cost : ndarray, shape (n, k)
        Cost estimates before / after the model has run (post-hoc usually the observed cost).
    """

    ante_quality: NDArray[np.float64]
    post_quality: NDArray[np.float64]
    ante_var: NDArray[np.float64]
    post_var: NDArray[np.float64]
    ante_cost: NDArray[np.float64]
    post_cost: NDArray[np.float64]

    def __post_init__(self) -> None:
        shape = None
        for name in _FIELDS:
            arr = table(getattr(self, name), name)
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise ValueError(
                    f"{name} must have shape {shape} like ante_quality, got {arr.shape}"
                )
            object.__setattr__(self, name, arr)
        if np.any(self.ante_var < 0) or np.any(self.post_var < 0):
            raise ValueError("variances must be non-negative")

    @property
    def n_queries(self) -> int:
        return int(self.ante_quality.shape[0])

    @property
    def n_models(self) -> int:
        return int(self.ante_quality.shape[1])

    def subset(self, rows: ArrayLike) -> TwoPhaseTables:
        """The tables restricted to ``rows`` (row ``i`` of the result is ``rows[i]``)."""
        idx = check_rows(rows, self.n_queries, "rows")
        return TwoPhaseTables(*(getattr(self, f)[idx] for f in _FIELDS))

    def select_models(self, columns: ArrayLike) -> TwoPhaseTables:
        """The tables with only the model columns ``columns`` (indices, in the order given)."""
        cols = check_rows(columns, self.n_models, "columns")
        return TwoPhaseTables(*(getattr(self, f)[:, cols] for f in _FIELDS))

    def quality_estimator(self) -> TwoPhaseQuality:
        """:class:`~cascade_routing.estimators.TwoPhaseQuality` over these tables."""
        return TwoPhaseQuality(self.ante_quality, self.post_quality, self.ante_var, self.post_var)

    def cost_estimator(self, clip_negative: bool = True) -> TwoPhaseCost:
        """:class:`~cascade_routing.estimators.TwoPhaseCost` over these tables.

        A linear calibration of a noisy cost signal can go below zero (the low and medium
        noise levels do on RouterBench); cost estimators must be non-negative, so negative
        estimates are set to 0 when ``clip_negative`` (the reference keeps them negative).
        With ``clip_negative=False`` a negative estimate raises ``ValueError``.
        """
        ante, post = self.ante_cost, self.post_cost
        if clip_negative:
            n_neg = int((ante < 0).sum() + (post < 0).sum())
            if n_neg:
                logger.info("cost_estimator: clipped %d negative cost estimates to 0", n_neg)
            ante, post = np.maximum(ante, 0.0), np.maximum(post, 0.0)
        return TwoPhaseCost(ante, post)

    def constant_cost_estimator(
        self, rows: ArrayLike | None = None, true_cost: ArrayLike | None = None
    ) -> ConstantCost:
        """:class:`~cascade_routing.estimators.ConstantCost` of the mean cost per model.

        Averages ``true_cost`` (``(n, k)``, e.g. the dataset's cost table) when given, else the
        post-hoc cost table, over ``rows`` (default all). The reference's threshold cascade
        uses the mean true cost over all rows.
        """
        values = self.post_cost if true_cost is None else table(true_cost, "true_cost")
        if rows is not None:
            values = values[check_rows(rows, values.shape[0], "rows")]
        return ConstantCost(values.mean(axis=0))


def with_reference_variance_quirk(tables: TwoPhaseTables) -> TwoPhaseTables:
    """The same tables as the reference implementation uses them, for number matching only.

    For independent estimates the reference multiplies its normal samples by the
    **variance** instead of the standard deviation (docs/algorithm.md §12), which understates
    the uncertainty. Squaring the variances here makes this package's (correct) use of the
    standard deviation reproduce that behaviour.
    """
    return TwoPhaseTables(
        tables.ante_quality,
        tables.post_quality,
        tables.ante_var**2,
        tables.post_var**2,
        tables.ante_cost,
        tables.post_cost,
    )


#: Candidate scales of :func:`fit_variance_scale`.
SCALE_GRID = (0.0, 0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0)


def fit_variance_scale(
    tables: TwoPhaseTables,
    rows: ArrayLike,
    quality: ArrayLike,
    *,
    grid: tuple[float, ...] = SCALE_GRID,
    n_runsets: int = 32,
    n_samples: int = 64,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The scale ``s`` of the ex-ante variances that best predicts what running a model gains.

    On the training ``rows`` (with true ``quality``, ``(n, k)`` like the tables) and
    ``n_runsets`` random run-sets ``R`` (neither empty nor full), the *predicted* gain of
    running one more model ``m`` is ``E[max(Z_R ∪ Z_m)] − E[max Z_R]`` with ``Z`` normal around
    the post-hoc estimates of the run models and the ex-ante estimates of the others, with
    variances ``post_var`` and ``s · ante_var``. The *realised* gain is the true quality of the
    answer selected after running ``m`` minus that selected before (selection: the best
    post-hoc estimate). The scale in ``grid`` with the least squared error wins (ties: the
    smaller scale). This is the criterion of ``LearnedQuality(uncertainty_scale="fit")``
    (docs/estimators.md) for two-phase tables. Returns the scale and the loss per scale.
    """
    idx = check_rows(rows, tables.n_queries, "rows")
    y = float_array(quality, "quality", 2, shape=(idx.size, tables.n_models))
    scales = [float(s) for s in grid]
    if not scales or min(scales) < 0:
        raise ValueError("grid must hold at least one scale >= 0")
    k, m = tables.n_models, idx.size
    if k < 2 or m == 0:
        return 1.0, {}
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_samples, k))
    ante, post = tables.ante_quality[idx], tables.post_quality[idx]
    ante_sd, post_sd = np.sqrt(tables.ante_var[idx]), np.sqrt(tables.post_var[idx])
    losses = dict.fromkeys(scales, 0.0)
    rows_m = np.arange(m)
    for _ in range(n_runsets):
        size = int(rng.integers(1, k))
        mask = np.zeros(k, dtype=bool)
        mask[rng.choice(k, size, replace=False)] = True
        run = np.flatnonzero(mask)
        sel = run[np.argmax(post[:, run], axis=1)]
        before = y[rows_m, sel]
        mu = np.where(mask, post, ante)
        # The realised gain of running j does not depend on the scale.
        realised = {}
        for j in np.flatnonzero(~mask).tolist():
            grown = np.append(run, j)
            sel2 = grown[np.argmax(post[:, grown], axis=1)]
            realised[j] = y[rows_m, sel2] - before
        for s in scales:
            sd = np.where(mask, post_sd, np.sqrt(s) * ante_sd)
            z = mu[:, None, :] + sd[:, None, :] * u[None]  # (m, S, k)
            base = z[:, :, run].max(axis=2)
            e_base = base.mean(axis=1)
            for j, gain in realised.items():
                predicted = np.maximum(base, z[:, :, j]).mean(axis=1) - e_base
                losses[s] += float(((predicted - gain) ** 2).sum())
    best = min(losses, key=lambda s: (losses[s], s))
    return best, losses


def with_variance_scale(tables: TwoPhaseTables, scale: float) -> TwoPhaseTables:
    """The tables with the ex-ante variances multiplied by ``scale``."""
    return TwoPhaseTables(
        tables.ante_quality,
        tables.post_quality,
        tables.ante_var * float(scale),
        tables.post_var,
        tables.ante_cost,
        tables.post_cost,
    )
