"""The paper's RouterBench experiment: simulated estimators of controlled quality (ALGORITHM.md §6).

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

:class:`TwoPhaseTables` is the container these (and the real-data estimators of
:mod:`cascade_routing.real_estimators`) return; it turns into the table-backed estimators of
:mod:`cascade_routing.estimators`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .validation import float_array as finite_array
from .datasets import Dataset
from .estimators import RUN_VARIANCE, ConstantCost, TwoPhaseCost, TwoPhaseQuality

logger = logging.getLogger(__name__)

__all__ = [
    "NOISE_LEVELS",
    "PAPER_AUC",
    "PAPER_POOLS",
    "PAPER_SWEBENCH_AUC",
    "REFERENCE_SUBSET_AUC",
    "ROUTERBENCH_MODELS",
    "RawSignals",
    "RouterBenchRun",
    "SimulatedEstimates",
    "TwoPhaseTables",
    "routerbench_protocol",
    "routerbench_run",
    "simulate_estimates",
    "simulate_signals",
]

#: Noise levels of the paper: (quality σ_ante, quality σ_post, cost σ_ante, cost σ_post).
NOISE_LEVELS: dict[str, tuple[float, float, float, float]] = {
    "low": (0.6, 0.3, 0.0002, 0.00005),
    "medium": (1.6, 0.8, 0.0004, 0.0001),
    "high": (2.4, 1.2, 100.0, 100.0),
}

#: All 11 RouterBench models, under this data's column names.
ROUTERBENCH_MODELS: tuple[str, ...] = (
    "WizardLM/WizardLM-13B-V1.2",
    "claude-instant-v1",
    "claude-v1",
    "claude-v2",
    "gpt-3.5-turbo-1106",
    "gpt-4-1106-preview",
    "meta/code-llama-instruct-34b-chat",
    "meta/llama-2-70b-chat",
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
)

#: The paper's model pools (this data's column names; the protocol sorts them by train cost).
PAPER_POOLS: dict[int, tuple[str, ...]] = {
    3: ("mistralai/mixtral-8x7b-chat", "gpt-3.5-turbo-1106", "gpt-4-1106-preview"),
    5: (
        "mistralai/mixtral-8x7b-chat",
        "gpt-3.5-turbo-1106",
        "gpt-4-1106-preview",
        "WizardLM/WizardLM-13B-V1.2",
        "claude-v2",
    ),
    11: ROUTERBENCH_MODELS,
}

_METHODS = ("linear", "routing", "threshold cascade", "optimal cascade", "cascade routing")


def _table_of(columns: Sequence[str], rows: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    return {m: dict(zip(columns, map(float, rows[m]))) for m in _METHODS}


#: The paper's published RouterBench (0-shot) AUC ×100, ALGORITHM.md §9:
#: ``PAPER_AUC[method]["3L"]`` = 3-model pool, low noise (L/M/H = low/medium/high).
PAPER_AUC: dict[str, dict[str, float]] = _table_of(
    ("3L", "3M", "3H", "5L", "5M", "5H", "11L", "11M", "11H"),
    {
        "linear": (69.62, 69.62, 69.62, 69.22, 69.22, 69.22, 70.51, 70.51, 70.51),
        "routing": (79.73, 74.97, 71.81, 81.24, 74.43, 71.33, 83.25, 74.63, 72.67),
        "threshold cascade": (80.86, 74.64, 72.48, 82.33, 73.03, 69.53, 84.48, 73.64, 69.79),
        "optimal cascade": (81.09, 76.16, 72.67, 83.06, 75.17, 70.18, 84.47, 75.10, 70.26),
        "cascade routing": (82.36, 76.55, 73.22, 84.33, 76.31, 72.75, 87.24, 77.57, 74.40),
    },
)

#: The reference implementation run on ``routerbench_subset`` with this module's exact
#: protocol and constant λ (AUC ×100, 10 budgets per hull segment), ALGORITHM.md §9.
REFERENCE_SUBSET_AUC: dict[str, dict[str, float]] = _table_of(
    ("3L", "3M", "3H", "5L", "5M", "5H"),
    {
        "linear": (80.86, 80.86, 80.86, 80.46, 80.46, 80.46),
        "routing": (89.20, 84.89, 83.41, 91.02, 84.60, 82.97),
        "threshold cascade": (89.24, 85.94, 84.14, 90.55, 84.98, 81.95),
        "optimal cascade": (91.58, 86.60, 84.32, 94.00, 86.72, 83.50),
        "cascade routing": (91.59, 87.26, 85.16, 94.43, 87.90, 85.21),
    },
)

#: The paper's SWE-Bench AUC ×100 (10 agents), ALGORITHM.md §9.
PAPER_SWEBENCH_AUC: dict[str, float] = {
    "routing": 40.49,
    "threshold cascade": 38.52,
    "optimal cascade": 53.21,
    "cascade routing": 54.12,
}


# --------------------------------------------------------------------------- the container


def _table(value: ArrayLike, name: str) -> NDArray[np.float64]:
    return finite_array(value, name, 2, layout="queries x models")


@dataclass(frozen=True, eq=False)
class TwoPhaseTables:
    """Ex-ante and post-hoc quality and cost estimates for every query (row) and model.

    Attributes
    ----------
    ante_quality, post_quality : ndarray, shape (n, k)
        Quality estimates before / after the model has run on the query.
    ante_var, post_var : ndarray, shape (n, k)
        Variances of those estimates (``post_var`` is :data:`~cascade_routing.estimators.RUN_VARIANCE`
        for the simulated and real-data estimators of this package).
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
        for name in ("ante_quality", "post_quality", "ante_var", "post_var", "ante_cost", "post_cost"):
            arr = _table(getattr(self, name), name)
            if shape is None:
                shape = arr.shape
            elif arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape} like ante_quality, got {arr.shape}")
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
        idx = np.asarray(rows)
        return TwoPhaseTables(*(getattr(self, f)[idx] for f in (
            "ante_quality", "post_quality", "ante_var", "post_var", "ante_cost", "post_cost")))

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

    def constant_cost_estimator(self, rows: ArrayLike | None = None, true_cost: ArrayLike | None = None) -> ConstantCost:
        """:class:`~cascade_routing.estimators.ConstantCost` of the mean cost per model.

        Averages ``true_cost`` (``(n, k)``, e.g. the dataset's cost table) when given, else the
        post-hoc cost table, over ``rows`` (default all). The reference's threshold cascade
        uses the mean true cost over all rows.
        """
        table = self.post_cost if true_cost is None else _table(true_cost, "true_cost")
        if rows is not None:
            table = table[np.asarray(rows)]
        return ConstantCost(table.mean(axis=0))


def with_reference_variance_quirk(tables: TwoPhaseTables) -> TwoPhaseTables:
    """The same tables as the reference implementation uses them, for number matching only.

    For independent estimates the reference multiplies its normal samples by the
    **variance** instead of the standard deviation (ALGORITHM.md §5), which understates
    the uncertainty. Squaring the variances here makes this package's (correct) use of the
    standard deviation reproduce that behaviour.
    """
    return TwoPhaseTables(
        tables.ante_quality, tables.post_quality, tables.ante_var**2, tables.post_var**2,
        tables.ante_cost, tables.post_cost,
    )


#: The simulated estimates are plain two-phase tables.
SimulatedEstimates = TwoPhaseTables


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
    pool = [pool] if isinstance(pool, str) else list(pool)
    if not pool:
        raise ValueError("pool must name at least one model")
    missing = [m for m in pool if m not in dataset.models]
    if missing:
        raise KeyError(f"pool models {missing} are not in the dataset ({list(dataset.models)})")
    if len(set(pool)) != len(pool):
        raise ValueError(f"pool models must not repeat, got {pool}")
    train, test = dataset.split_rows(test_size=test_size, seed=split_seed)
    cols = [dataset.models.index(m) for m in pool]
    mean_cost = dataset.cost[train][:, cols].mean(axis=0)
    order = np.argsort(mean_cost, kind="stable")
    return train, test, [pool[i] for i in order]


def _noise(noise: str | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(noise, str):
        if noise not in NOISE_LEVELS:
            raise ValueError(f"unknown noise level {noise!r}; use one of {list(NOISE_LEVELS)} "
                             "or a tuple (q_ante, q_post, cost_ante, cost_post)")
        return NOISE_LEVELS[noise]
    values = tuple(float(v) for v in noise)
    if len(values) != 4:
        raise ValueError("noise must be a level name or 4 numbers (q_ante, q_post, cost_ante, cost_post)")
    if not all(np.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"noise standard deviations must be finite and >= 0, got {values}")
    return values  # type: ignore[return-value]


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
    q = _table(quality, "quality")
    c = _table(cost, "cost")
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
    rng = np.random.RandomState(seed)
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
