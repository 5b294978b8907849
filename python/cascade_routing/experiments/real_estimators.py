"""Quality and cost estimators for the real datasets, as two-phase tables.

Each function fits on the training rows of a :class:`~.datasets.Dataset` and
returns a :class:`~.tables.TwoPhaseTables` with estimates for **all** rows,
so it plugs into :class:`~cascade_routing.estimators.TwoPhaseQuality` /
:class:`~cascade_routing.estimators.TwoPhaseCost` with row indices as queries
(``tables.quality_estimator()``, ``tables.cost_estimator()``). Only training rows' outcomes are
used for fitting; test rows only contribute what an estimator may legitimately see (features
before a model runs, the model's own confidence and cost after it ran).

Uncertainty follows the paper's default (docs/estimators.md), restricted to independent
per-model variances: a not-run model's variance is the variance over training rows of
(ex-ante − post-hoc estimate); a run model's is ``RUN_VARIANCE`` (1e-6). The ex-ante estimates
are fitted on the same training rows, so this in-sample variance slightly understates the
out-of-sample error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..estimators import RUN_VARIANCE
from ..validation import check_number, check_rows
from .datasets import Dataset
from .tables import TwoPhaseTables

logger = logging.getLogger(__name__)

__all__ = ["MAX_GROUP_FEATURES", "confidence_estimates", "swebench_estimates"]

#: Most groups that get their own one-hot feature and confidence slope in
#: :func:`confidence_estimates`.
MAX_GROUP_FEATURES = 64


def _train_rows(rows: ArrayLike, n: int) -> NDArray[np.int64]:
    idx = check_rows(rows, n, "train_rows", unique=True)
    if idx.size < 2:
        raise ValueError("train_rows must hold at least 2 rows")
    return idx


def _not_run_variance(
    ante: NDArray[np.float64], post: NDArray[np.float64], train: NDArray[np.int64]
) -> NDArray[np.float64]:
    diff = ante[train] - post[train]
    var = np.var(diff, axis=0)  # per model, ddof=0 like the reference's std**2
    return np.broadcast_to(var, ante.shape).copy()


def _is_binary(y: NDArray[np.float64]) -> bool:
    return bool(np.all((y == 0.0) | (y == 1.0)))


def _logistic(
    x: NDArray[np.float64], y: NDArray[np.float64], train: NDArray[np.int64], C: float, seed: int
) -> NDArray[np.float64] | None:
    """P(y = 1 | x) for every row from a logistic regression fitted on ``train``; ``None`` if
    the train labels have a single class or are not 0/1 (the caller falls back to the mean)."""
    from sklearn.linear_model import LogisticRegression

    y_train = y[train]
    if x.shape[1] == 0 or not _is_binary(y_train) or np.unique(y_train).size < 2:
        return None
    model = LogisticRegression(C=C, random_state=seed, max_iter=1000)
    model.fit(x[train], y_train.astype(int))
    return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)


def _standardise(values: NDArray[np.float64], train: NDArray[np.int64]) -> NDArray[np.float64]:
    mu = values[train].mean()
    sd = values[train].std()
    return np.asarray((values - mu) / sd if sd > 0 else values - mu, dtype=np.float64)


def _groups_in_training(
    groups: NDArray[Any], train: NDArray[np.int64]
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """For each group seen in training, in sorted order: its training rows (in the order of
    ``train``) and all its rows (ascending).

    One sort of the labels, so O(n log n) for any number of groups (a mask per group would be
    O(n × groups): quadratic when every query has its own repository).
    """
    _, codes = np.unique(groups, return_inverse=True)
    codes = codes.reshape(-1)
    train_codes = codes[train]
    train_order = np.argsort(train_codes, kind="stable")
    train_sorted = train_codes[train_order]
    all_order = np.argsort(codes, kind="stable")
    all_sorted = codes[all_order]
    seen = np.unique(train_codes)
    train_lo = np.searchsorted(train_sorted, seen, "left")
    train_hi = np.searchsorted(train_sorted, seen, "right")
    all_lo = np.searchsorted(all_sorted, seen, "left")
    all_hi = np.searchsorted(all_sorted, seen, "right")
    for a, b, c, d in zip(train_lo, train_hi, all_lo, all_hi):
        yield train[train_order[a:b]], all_order[c:d]


def _group_one_hot(dataset: Dataset, train: NDArray[np.int64]) -> list[NDArray[np.float64]]:
    """One column per group seen in training (unseen groups: all zero).

    None for a single group, and none beyond :data:`MAX_GROUP_FEATURES` groups: a group is
    then nearly one query, and the columns would grow with the square of the rows.
    """
    if dataset.groups is None:
        return []
    _, codes = np.unique(dataset.groups, return_inverse=True)
    codes = codes.reshape(-1)
    seen = np.unique(codes[train])
    if seen.size < 2:
        return []
    if seen.size > MAX_GROUP_FEATURES:
        logger.info(
            "%d groups in training, more than %d: no per-group features",
            seen.size,
            MAX_GROUP_FEATURES,
        )
        return []
    return [(codes == c).astype(np.float64) for c in seen]


def _ex_ante_features(dataset: Dataset, train: NDArray[np.int64]) -> NDArray[np.float64]:
    """Group one-hot + standardised log prompt length."""
    columns = _group_one_hot(dataset, train)
    if "prompt_chars" in dataset.features:
        chars = np.asarray(dataset.features["prompt_chars"], dtype=np.float64)
        if np.all(np.isfinite(chars)) and np.all(chars >= 0):
            columns.append(_standardise(np.log1p(chars), train))
    if not columns:
        return np.zeros((dataset.n_queries, 0))
    return np.column_stack(columns)


def confidence_estimates(
    dataset: Dataset,
    train_rows: ArrayLike,
    seed: int = 0,
    *,
    C: float = 1.0,
    scale_cost_by_prompt_length: bool = True,
) -> TwoPhaseTables:
    """Estimates from raw confidences (``llm_cascades`` data), fitted on ``train_rows``.

    * **post-hoc quality** of model ``j``: ``P(correct | raw confidence, ex-ante inputs)``
      from a per-model logistic regression on the training rows. Inputs: the ex-ante inputs
      below, the standardised raw confidence (one slope per group when there are several
      groups, since a benchmark's confidence may be a different kind of score), and an
      indicator "confidence is ``-inf``". A ``-inf`` confidence (no Y/N could be extracted)
      is first replaced by the lowest finite training confidence of that model; the indicator
      then lets the fit give those rows their own level. If no training row of the model has
      ``-inf`` the indicator is left out, and a ``-inf`` at prediction time is treated as the
      lowest training confidence.
    * **ex-ante quality**: ``P(correct | group, log prompt length)`` from a per-model logistic
      regression on what is known before any model runs: a one-hot of the query's group
      (benchmark; only when the training rows have more than one) and the standardised
      ``log(1 + prompt_chars)`` (when the dataset has that feature). Without any feature, or
      when the training labels of a model are all equal, both estimates fall back to that
      model's training accuracy.
    * **variances**: not-run = variance over training rows of (ex-ante − post-hoc), per model;
      run = ``RUN_VARIANCE``.
    * **costs**: post-hoc = the observed cost. Ex-ante = the model's training cost per prompt
      character times the query's ``prompt_chars`` (computed per group when the group occurs
      in training), when ``scale_cost_by_prompt_length`` and the feature exists; else the
      model's mean training cost.

    Parameters
    ----------
    dataset : Dataset
        Must have ``confidence``.
    train_rows : array_like of int (or a boolean mask)
        Rows whose outcomes may be used for fitting.
    seed : int
        ``random_state`` of the logistic regressions (the default solver is deterministic).
    C : float
        Inverse L2 regularisation strength of the logistic regressions.
    scale_cost_by_prompt_length : bool
        Use the prompt-length cost model described above when possible.
    """
    if dataset.confidence is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no confidences; confidence_estimates needs the "
            "llm_cascades data (load_llm_cascades)"
        )
    n, k = dataset.n_queries, dataset.n_models
    train = _train_rows(train_rows, n)
    quality = dataset.quality
    post = np.empty((n, k))
    ante = np.empty((n, k))
    x_ante = _ex_ante_features(dataset, train)
    one_hot = _group_one_hot(dataset, train)
    for j in range(k):
        y = quality[:, j]
        fallback = float(y[train].mean())
        conf = dataset.confidence[:, j]
        finite = np.isfinite(conf)
        train_finite = conf[train][finite[train]]
        if train_finite.size:
            fill = float(train_finite.min())
        elif finite.any():
            fill = float(conf[finite].min())
        else:
            fill = 0.0
        value = _standardise(np.where(finite, conf, fill), train)
        # A confidence means different things on different benchmarks (answer-token log-prob
        # vs. a Y/N self-assessment): one slope per group, on top of the ex-ante inputs.
        cols = [x_ante[:, c] for c in range(x_ante.shape[1])]
        cols += [value * g for g in one_hot] if one_hot else [value]
        if (~finite[train]).any():
            cols.append((~finite).astype(np.float64))
        p_post = _logistic(np.column_stack(cols), y, train, C, seed)
        post[:, j] = fallback if p_post is None else p_post
        p_ante = _logistic(x_ante, y, train, C, seed)
        ante[:, j] = fallback if p_ante is None else p_ante
        if p_post is None or p_ante is None:
            logger.info(
                "confidence_estimates: model %r falls back to its train accuracy",
                dataset.models[j],
            )
    ante_var = _not_run_variance(ante, post, train)
    post_var = np.full((n, k), RUN_VARIANCE)
    ante_cost = _ex_ante_cost(dataset, train, scale_cost_by_prompt_length)
    return TwoPhaseTables(ante, post, ante_var, post_var, ante_cost, dataset.cost.copy())


def _ex_ante_cost(
    dataset: Dataset, train: NDArray[np.int64], by_length: bool
) -> NDArray[np.float64]:
    n, k = dataset.n_queries, dataset.n_models
    mean_cost = dataset.cost[train].mean(axis=0)
    chars: Any = dataset.features.get("prompt_chars")
    if not by_length or chars is None:
        return np.broadcast_to(mean_cost, (n, k)).copy()
    chars = np.asarray(chars, dtype=np.float64)
    if not (np.all(np.isfinite(chars)) and np.all(chars >= 0)) or chars[train].sum() <= 0:
        return np.broadcast_to(mean_cost, (n, k)).copy()
    # Ratio estimator: cost ≈ (Σ_train cost / Σ_train chars) × chars, per model (and per group
    # when the group was seen in training), so it is never negative.
    rate = dataset.cost[train].sum(axis=0) / chars[train].sum()
    out = chars[:, None] * rate[None, :]
    if dataset.groups is not None:
        for in_train, rows in _groups_in_training(dataset.groups, train):
            total = chars[in_train].sum()
            if total > 0:
                rate_g = dataset.cost[in_train].sum(axis=0) / total
                out[rows] = chars[rows, None] * rate_g[None, :]
    return np.asarray(out, dtype=np.float64)


def swebench_estimates(
    dataset: Dataset,
    train_rows: ArrayLike,
    seed: int = 0,
    *,
    prior_strength: float = 5.0,
) -> TwoPhaseTables:
    """Estimates for SWE-bench agents, fitted on ``train_rows``.

    * **ex-ante quality** of model ``j`` on a query from repository ``g``: its training resolve
      rate in ``g``, smoothed toward its overall training rate ``p_j`` (a beta-binomial /
      additive prior of ``prior_strength`` pseudo-instances)::

          (resolved_j,g + prior_strength * p_j) / (n_g + prior_strength)

      A repository absent from training gets ``p_j``. Without ``groups``, ``p_j`` everywhere.
    * **post-hoc quality**: the observed resolved flag — once an agent has run, its patch's
      tests tell whether it resolved the issue, as in the paper.
    * **variances**: not-run = variance over training rows of (ex-ante − post-hoc), per model;
      run = ``RUN_VARIANCE``.
    * **costs**: ex-ante = the model's mean training cost; post-hoc = the observed cost.

    ``seed`` is accepted for a uniform signature; nothing here is random.
    """
    del seed
    prior_strength = check_number(prior_strength, "prior_strength", 0.0)
    n, k = dataset.n_queries, dataset.n_models
    train = _train_rows(train_rows, n)
    y = dataset.quality
    overall = y[train].mean(axis=0)
    ante = np.broadcast_to(overall, (n, k)).copy()
    if dataset.groups is not None:
        # Per-group sums in one pass over the training rows (in their order).
        _, codes = np.unique(dataset.groups, return_inverse=True)
        codes = codes.reshape(-1)
        n_groups = int(codes.max()) + 1
        counts = np.bincount(codes[train], minlength=n_groups)
        resolved = np.zeros((n_groups, k))
        np.add.at(resolved, codes[train], y[train])
        in_training = counts > 0
        rate = np.zeros((n_groups, k))
        rate[in_training] = (resolved[in_training] + prior_strength * overall) / (
            counts[in_training, None] + prior_strength
        )
        seen = in_training[codes]
        ante[seen] = rate[codes[seen]]
    post = y.copy()
    ante_var = _not_run_variance(ante, post, train)
    post_var = np.full((n, k), RUN_VARIANCE)
    ante_cost = np.broadcast_to(dataset.cost[train].mean(axis=0), (n, k)).copy()
    return TwoPhaseTables(ante, post, ante_var, post_var, ante_cost, dataset.cost.copy())
