"""The paper's RouterBench experiment: simulated estimators of controlled quality.

The protocol is docs/algorithm.md §13.

The paper does not train quality estimators on RouterBench. It simulates them from the true
per-query quality ``y`` and cost ``c``: an ex-ante signal ``y + N(0, σ_ante²)`` and a post-hoc
signal ``y + N(0, σ_post²)`` per query and model, each calibrated to the truth by a per-model
linear regression. :func:`routerbench_protocol` and :func:`simulate_estimates` follow the
reference implementation's protocol exactly, so that a run on ``routerbench_subset`` matches it
draw for draw:

1. drop the queries with a missing value for any of the 11 models (the loader does this:
   3,150 of 3,178 rows remain);
2. split ``range(n)`` with ``sklearn.model_selection.train_test_split(test_size=0.95,
   random_state=42)`` — 157 train and 2,993 test queries;
3. order the pool by mean train cost, cheapest first;
4. concatenate train then test rows and draw every signal from one
   ``numpy.random.RandomState(0)`` stream (identical to ``numpy.random.seed(0)`` followed by
   ``numpy.random.normal``): first all cost signals, then all quality signals, each row by
   row, within a row model by model, the ex-ante draw before the post-hoc draw;
5. calibrate each (model, signal) by least squares over **all** rows (train and test, as the
   reference does);
6. variance of a not-run model's estimate: ``std(ex-ante − post-hoc estimate)²`` over all rows
   (per model, ``ddof=0``); of a run model ``1e-6``.

The estimates are a :class:`~.tables.TwoPhaseTables`, like those of the real-data estimators
of :mod:`.real_estimators`; it turns into the table-backed estimators of
:mod:`cascade_routing.estimators`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..estimators import RUN_VARIANCE
from ..validation import check_model_names, check_seed
from .datasets import Dataset
from .settings import NOISE_LEVELS
from .tables import TwoPhaseTables, table

logger = logging.getLogger(__name__)

__all__ = [
    "RawSignals",
    "RouterBenchRun",
    "routerbench_protocol",
    "routerbench_run",
    "simulate_estimates",
    "simulate_signals",
]


# --------------------------------------------------------------------------- the protocol


def routerbench_protocol(
    dataset: Dataset,
    pool: Sequence[str],
    test_size: float = 0.95,
    split_seed: int = 42,
) -> tuple[NDArray[np.int64], NDArray[np.int64], list[str]]:
    """Split and model order of the paper's RouterBench protocol.

    Parameters
    ----------
    dataset : Dataset
        RouterBench rows as loaded (the loader has already dropped rows with a missing value).
        To reproduce the paper's split, load **all 11 models** (3,150 rows remain), then pick
        the pool here; loading only the pool would drop fewer rows and change the split.
    pool : sequence of str
        Model names (e.g. ``PAPER_POOLS[3]``).
    test_size, split_seed : float, int
        ``train_test_split(range(n), test_size=test_size, random_state=split_seed)``.

    Returns
    -------
    train_rows, test_rows : ndarray of int
        Row indices into ``dataset`` (157 / 2,993 on ``routerbench_subset``).
    models : list of str
        The pool sorted by mean train cost, cheapest first (ties keep the given order).
    """
    pool = list(check_model_names([pool] if isinstance(pool, str) else pool, "pool"))
    missing = [m for m in pool if m not in dataset.models]
    if missing:
        raise KeyError(f"pool models {missing} are not in the dataset ({list(dataset.models)})")
    train, test = dataset.split_rows(test_size=test_size, seed=split_seed)
    cols = [dataset.models.index(m) for m in pool]
    mean_cost = dataset.cost[train][:, cols].mean(axis=0)
    order = np.argsort(mean_cost, kind="stable")
    return train, test, [pool[i] for i in order]


def _noise(noise: str | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(noise, str):
        if noise not in NOISE_LEVELS:
            raise ValueError(
                f"unknown noise level {noise!r}; use one of {list(NOISE_LEVELS)} "
                "or a tuple (q_ante, q_post, cost_ante, cost_post)"
            )
        return NOISE_LEVELS[noise]
    values = tuple(float(v) for v in noise)
    if len(values) != 4:
        raise ValueError(
            "noise must be a level name or 4 numbers (q_ante, q_post, cost_ante, cost_post)"
        )
    if not all(np.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"noise standard deviations must be finite and >= 0, got {values}")
    return values


def _draw_signals(
    rng: np.random.RandomState, truth: NDArray[np.float64], sd_ante: float, sd_post: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Ex-ante and post-hoc signals ``truth + N(0, σ)``, in the reference's draw order.

    The reference calls ``numpy.random.normal`` once per scalar: for each row, for each model,
    the ex-ante then the post-hoc draw. The legacy generator's scalar and vector draws share
    one Gaussian stream, so one ``standard_normal((n, k, 2))`` in C order gives the same
    numbers, and ``truth + σ z`` is the same floating-point operation as ``normal(truth, σ)``.
    """
    z = rng.standard_normal(size=truth.shape + (2,))
    return truth + sd_ante * z[:, :, 0], truth + sd_post * z[:, :, 1]


def _calibrate(signal: NDArray[np.float64], truth: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-column least-squares fit of ``truth`` on ``signal``, evaluated on ``signal``."""
    from sklearn.linear_model import LinearRegression

    out = np.empty_like(signal)
    for j in range(signal.shape[1]):
        x = signal[:, j].reshape(-1, 1)
        out[:, j] = LinearRegression().fit(x, truth[:, j]).predict(x)
    return out


@dataclass(frozen=True, eq=False)
class RawSignals:
    """Uncalibrated simulated signals ``truth + N(0, σ²)``, each ``(n, k)``."""

    ante_quality: NDArray[np.float64]
    post_quality: NDArray[np.float64]
    ante_cost: NDArray[np.float64]
    post_cost: NDArray[np.float64]


def _truth(quality: ArrayLike, cost: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    q = table(quality, "quality")
    c = table(cost, "cost")
    if q.shape != c.shape:
        raise ValueError(f"quality {q.shape} and cost {c.shape} must have the same shape")
    return q, c


def simulate_signals(
    quality: ArrayLike,
    cost: ArrayLike,
    noise: str | Sequence[float],
    seed: int = 0,
) -> RawSignals:
    """The raw signals :func:`simulate_estimates` calibrates (same stream, same order).

    Cost signals are drawn first, then quality signals; each row by row, within a row model by
    model, the ex-ante draw before the post-hoc draw, from ``numpy.random.RandomState(seed)``.
    """
    q, c = _truth(quality, cost)
    q_ante_sd, q_post_sd, c_ante_sd, c_post_sd = _noise(noise)
    rng = np.random.RandomState(check_seed(seed))
    cost_ante, cost_post = _draw_signals(rng, c, c_ante_sd, c_post_sd)
    q_ante, q_post = _draw_signals(rng, q, q_ante_sd, q_post_sd)
    return RawSignals(q_ante, q_post, cost_ante, cost_post)


def simulate_estimates(
    quality: ArrayLike,
    cost: ArrayLike,
    noise: str | Sequence[float],
    seed: int = 0,
) -> TwoPhaseTables:
    """Simulated ex-ante / post-hoc estimates of the paper's RouterBench experiments.

    Parameters
    ----------
    quality, cost : array_like, shape (n, k)
        True quality and cost, rows = train rows then test rows, columns = the pool in its
        order (as :func:`routerbench_protocol` returns them).
    noise : str or 4 floats
        A key of :data:`NOISE_LEVELS` or ``(q_σ_ante, q_σ_post, cost_σ_ante, cost_σ_post)``.
    seed : int
        Seed of the ``numpy.random.RandomState`` stream (the reference: 0).

    Returns
    -------
    TwoPhaseTables
        Calibrated estimates for every row; ``ante_var[:, j]`` is model ``j``'s
        ``std(ante − post)²`` over all rows, ``post_var`` is ``1e-6``. Cost estimates are
        calibrated but not clipped (see :meth:`TwoPhaseTables.cost_estimator`).

    Notes
    -----
    Draw order, as in the reference: all cost signals first, then all quality signals; each
    row by row, within a row model by model, ex-ante before post-hoc.
    """
    q, c = _truth(quality, cost)
    if q.shape[0] < 2:
        raise ValueError("the calibration needs at least 2 rows")
    raw = simulate_signals(q, c, noise, seed)
    ante_cost = _calibrate(raw.ante_cost, c)
    post_cost = _calibrate(raw.post_cost, c)
    ante_quality = _calibrate(raw.ante_quality, q)
    post_quality = _calibrate(raw.post_quality, q)
    # Column by column, as the reference does (np.std over a whole axis may sum in another
    # order and differ in the last bit).
    sd = np.array([np.std(ante_quality[:, j] - post_quality[:, j]) for j in range(q.shape[1])])
    ante_var = np.broadcast_to(sd**2, q.shape).copy()
    post_var = np.full(q.shape, RUN_VARIANCE)
    return TwoPhaseTables(ante_quality, post_quality, ante_var, post_var, ante_cost, post_cost)


@dataclass(frozen=True, eq=False)
class RouterBenchRun:
    """One configuration of the paper's RouterBench experiment, ready for the strategies.

    ``dataset`` holds the train rows then the test rows, with the pool's models in protocol
    order, so query ``i`` of the estimators is row ``i`` of ``dataset``; ``train_rows`` and
    ``test_rows`` are ``arange(n_train)`` and ``arange(n_train, n)``.
    """

    dataset: Dataset
    train_rows: NDArray[np.int64]
    test_rows: NDArray[np.int64]
    estimates: TwoPhaseTables
    noise: tuple[float, float, float, float]


def routerbench_run(
    dataset: Dataset,
    pool: Sequence[str],
    noise: str | Sequence[float],
    seed: int = 0,
    test_size: float = 0.95,
    split_seed: int = 42,
) -> RouterBenchRun:
    """:func:`routerbench_protocol` then :func:`simulate_estimates` on the reordered rows."""
    train, test, models = routerbench_protocol(dataset, pool, test_size, split_seed)
    data = dataset.select_models(models).subset(np.concatenate([train, test]))
    estimates = simulate_estimates(data.quality, data.cost, noise, seed)
    n_train = len(train)
    return RouterBenchRun(
        dataset=data,
        train_rows=np.arange(n_train, dtype=np.int64),
        test_rows=np.arange(n_train, data.n_queries, dtype=np.int64),
        estimates=estimates,
        noise=_noise(noise),
    )
