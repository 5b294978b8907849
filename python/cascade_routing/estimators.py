"""Quality and cost estimators: the protocol and the estimators that ship with the package.

A quality estimator maps ``(queries, answers)`` to quality estimates for every model; a cost
estimator maps them to cost estimates. ``answers[i][j]`` is model ``j``'s answer to query ``i``,
or ``None`` if model ``j`` has not run on it. Estimates of a model that has run are *post-hoc*
(they may use its answer), of the others *ex-ante*.

Table-backed estimators (:class:`TwoPhaseQuality`, :class:`TwoPhaseCost`, :class:`TableCost`)
take integer row indices as queries: row ``i`` of their tables is query ``i``. The strategies
recognise them and replay them entirely in the compiled core during fitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .validation import (
    MAX_MAGNITUDE,
    all_within,
    check_answers,
    check_rows,
    float_array,
    ran_mask,
)

#: Variance given to the estimate of a model that has run (its quality is then almost known).
RUN_VARIANCE = 1e-6


@dataclass(frozen=True)
class QualityEstimate:
    """Quality estimates for ``n`` queries and ``k`` models.

    ``mean`` is ``(n, k)``; at most one of ``var`` ``(n, k)`` (independent) and ``cov``
    ``(n, k, k)`` (full covariance) is set; neither means the means are taken as exact.
    """

    mean: NDArray[np.float64]
    var: NDArray[np.float64] | None = None
    cov: NDArray[np.float64] | None = None


@runtime_checkable
class QualityEstimator(Protocol):
    """Anything with ``predict(queries, answers) -> QualityEstimate``.

    ``predict`` may also return a bare ``(n, k)`` array of means, or a tuple
    ``(mean, var_or_cov_or_None)``.
    """

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> Any: ...


@runtime_checkable
class CostEstimator(Protocol):
    """Anything with ``predict(queries, answers) -> (n, k) array`` of non-negative costs."""

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> Any: ...


def _table(
    value: ArrayLike,
    name: str,
    shape: tuple[int, ...] | None = None,
    nonnegative: bool = False,
) -> NDArray[np.float64]:
    return float_array(
        value, name, 2, shape=shape, layout="queries x models", nonnegative=nonnegative
    )


class TwoPhaseQuality:
    """Per-model quality tables that switch from ex-ante to post-hoc once a model has run.

    Parameters
    ----------
    ante_mean, post_mean : array_like, shape (n_rows, k)
        Ex-ante and post-hoc quality estimates; queries are row indices.
    ante_var, post_var : array_like, shape (n_rows, k), optional
        Variances of the estimates (independent across models). ``post_var`` defaults to
        :data:`RUN_VARIANCE`. Without ``ante_var`` the estimates are exact.
    """

    def __init__(
        self,
        ante_mean: ArrayLike,
        post_mean: ArrayLike,
        ante_var: ArrayLike | None = None,
        post_var: ArrayLike | None = None,
    ) -> None:
        self.ante_mean = _table(ante_mean, "ante_mean")
        self.post_mean = _table(post_mean, "post_mean", self.ante_mean.shape)
        if ante_var is None:
            if post_var is not None:
                raise ValueError("post_var needs ante_var")
            self.ante_var: NDArray[np.float64] | None = None
            self.post_var: NDArray[np.float64] | None = None
        else:
            shape = self.ante_mean.shape
            self.ante_var = _table(ante_var, "ante_var", shape, nonnegative=True)
            if post_var is None:
                self.post_var = np.full(shape, RUN_VARIANCE)
            else:
                self.post_var = _table(post_var, "post_var", shape, nonnegative=True)

    @property
    def n_models(self) -> int:
        return int(self.ante_mean.shape[1])

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> QualityEstimate:
        rows = check_rows(queries, self.ante_mean.shape[0], "queries of TwoPhaseQuality")
        ran = ran_mask(answers, self.n_models)
        mean = np.where(ran, self.post_mean[rows], self.ante_mean[rows])
        if self.ante_var is None or self.post_var is None:
            return QualityEstimate(mean)
        return QualityEstimate(mean, np.where(ran, self.post_var[rows], self.ante_var[rows]))


class TwoPhaseCost:
    """Per-model cost tables: ex-ante estimates until a model has run, then post-hoc ones."""

    def __init__(self, ante: ArrayLike, post: ArrayLike) -> None:
        self.ante = _table(ante, "ante", nonnegative=True)
        self.post = _table(post, "post", self.ante.shape, nonnegative=True)

    @property
    def n_models(self) -> int:
        return int(self.ante.shape[1])

    def predict(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> NDArray[np.float64]:
        rows = check_rows(queries, self.ante.shape[0], "queries of TwoPhaseCost")
        ran = ran_mask(answers, self.n_models)
        return np.where(ran, self.post[rows], self.ante[rows])


class TableCost(TwoPhaseCost):
    """Per-query cost table (e.g. logged costs): the same estimate before and after running."""

    def __init__(self, table: ArrayLike) -> None:
        super().__init__(table, table)


class ConstantCost:
    """One cost per model for every query (e.g. the mean training cost)."""

    def __init__(self, costs: ArrayLike) -> None:
        arr = float_array(costs, "costs", 1, nonnegative=True, layout="one cost per model")
        if arr.size == 0:
            raise ValueError("costs must hold one cost per model, got none")
        self.costs = arr

    @classmethod
    def from_training(cls, cost: ArrayLike) -> ConstantCost:
        """Mean cost per model over training queries (``cost`` is ``(n, k)``)."""
        table = _table(cost, "cost")
        return cls(table.mean(axis=0))

    @property
    def n_models(self) -> int:
        return int(self.costs.shape[0])

    def predict(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> NDArray[np.float64]:
        return np.tile(self.costs, (len(queries), 1))


class DefaultUncertainty:
    """Adds the default uncertainty of docs/estimators.md §5 to any quality estimator.

    For each set ``R`` of run models, ``Σ_R`` is the covariance over training queries of
    (estimate given ``R``) − (estimate given all models run). It is computed lazily, once per
    run-set, from the training data given to :meth:`fit`, and added to the wrapped estimator's
    means (any uncertainty the wrapped estimator returns is replaced).

    Parameters
    ----------
    estimator : QualityEstimator
        The estimator whose means are used.
    diagonal : bool
        Keep only the variances (independent uncertainty) instead of the full covariance.
    """

    def __init__(self, estimator: Any, *, diagonal: bool = False) -> None:
        self.estimator = estimator
        self.diagonal = diagonal
        self._queries: list[Any] | None = None
        self._answers: list[list[Any]] | None = None
        self._final: NDArray[np.float64] | None = None
        self._cache: dict[bytes, NDArray[np.float64]] = {}

    def fit(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> DefaultUncertainty:
        """Remember training queries with every model's answer."""
        self._queries = list(queries)
        self._answers = [list(row) for row in answers]
        if not self._answers:
            raise ValueError("DefaultUncertainty.fit needs at least one training query")
        k = len(self._answers[0])
        check_answers(self._answers, len(self._queries), k, full=True)
        self._final = as_quality_estimate(
            self.estimator.predict(self._queries, self._answers), len(self._queries), k
        ).mean
        self._cache.clear()
        return self

    def uncertainty(self, ran: NDArray[np.bool_]) -> NDArray[np.float64]:
        """``Σ_R`` for the run-set ``ran``: ``(k, k)``, or ``(k,)`` variances if ``diagonal``."""
        if self._final is None or self._answers is None or self._queries is None:
            raise RuntimeError(
                "DefaultUncertainty is not fitted; call fit(queries, answers) first"
            )
        key = np.asarray(ran, dtype=bool).tobytes()
        if key not in self._cache:
            partial = [[a if ran[j] else None for j, a in enumerate(row)] for row in self._answers]
            est = as_quality_estimate(
                self.estimator.predict(self._queries, partial), len(self._queries), len(ran)
            ).mean
            diff = est - self._final
            if diff.shape[0] > 1:
                cov = np.atleast_2d(np.cov(diff, rowvar=False))
            else:
                cov = np.zeros((len(ran), len(ran)))
            cov = (cov + cov.T) / 2
            self._cache[key] = np.diag(cov).copy() if self.diagonal else cov
        return self._cache[key]

    def predict_mean(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> Any:
        """The wrapped estimator's means alone (the prepared decider holds ``Σ_R`` per
        run-set, docs/decider.md §2); needs no :meth:`fit`."""
        value = self.estimator.predict(queries, answers)
        if isinstance(value, QualityEstimate):
            return value.mean
        if isinstance(value, tuple) and len(value) == 2:
            return value[0]
        return value

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> QualityEstimate:
        if self._final is None:
            raise RuntimeError(
                "DefaultUncertainty is not fitted; call fit(queries, answers) first"
            )
        k = self._final.shape[1]
        mean = as_quality_estimate(self.estimator.predict(queries, answers), len(queries), k).mean
        ran = ran_mask(answers, k)
        n = len(queries)
        if self.diagonal:
            var = np.empty((n, k))
            for i in range(n):
                var[i] = self.uncertainty(ran[i])
            return QualityEstimate(mean, var=var)
        cov = np.empty((n, k, k))
        for i in range(n):
            cov[i] = self.uncertainty(ran[i])
        return QualityEstimate(mean, cov=cov)


def as_quality_estimate(
    value: Any, n: int, k: int, source: str = "quality estimator"
) -> QualityEstimate:
    """Normalise what a quality estimator returned and check its shapes and values."""
    if isinstance(value, QualityEstimate):
        mean, var, cov = value.mean, value.var, value.cov
    elif isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(
                f"{source} returned a tuple of length {len(value)}; expected (mean, var_or_cov)"
            )
        mean, unc = value
        var = cov = None
        if unc is not None:
            unc = np.asarray(unc)
            if unc.ndim == 2:
                var = unc
            elif unc.ndim == 3:
                cov = unc
            else:
                raise ValueError(
                    f"{source} returned uncertainty of shape {unc.shape}; "
                    "expected (n, k) or (n, k, k)"
                )
    else:
        mean, var, cov = value, None, None
    mean_a = np.asarray(mean)
    if mean_a.dtype.kind not in "biuf":
        raise TypeError(f"{source} returned means of dtype {mean_a.dtype}; expected floats")
    if mean_a.shape != (n, k):
        raise ValueError(f"{source} returned means of shape {mean_a.shape}; expected {(n, k)}")
    mean_f = np.ascontiguousarray(mean_a, dtype=np.float64)
    if not all_within(mean_f, -MAX_MAGNITUDE, MAX_MAGNITUDE):
        raise ValueError(f"{source} returned NaN, infinite or huge (beyond 1e100) quality means")
    var_f = cov_f = None
    if var is not None:
        var_f = np.ascontiguousarray(var, dtype=np.float64)
        if var_f.shape != (n, k):
            raise ValueError(
                f"{source} returned variances of shape {var_f.shape}; expected {(n, k)}"
            )
        if not all_within(var_f, 0.0, MAX_MAGNITUDE):
            raise ValueError(f"{source} returned negative, NaN, infinite or huge variances")
    if cov is not None:
        cov_f = np.ascontiguousarray(cov, dtype=np.float64)
        if cov_f.shape != (n, k, k):
            raise ValueError(
                f"{source} returned covariances of shape {cov_f.shape}; expected {(n, k, k)}"
            )
        if not all_within(cov_f, -MAX_MAGNITUDE, MAX_MAGNITUDE):
            raise ValueError(f"{source} returned NaN, infinite or huge covariances")
    return QualityEstimate(mean_f, var_f, cov_f)


def as_cost_estimate(
    value: Any, n: int, k: int, source: str = "cost estimator"
) -> NDArray[np.float64]:
    """Normalise what a cost estimator returned and check its shape and values."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{source} returned costs of dtype {arr.dtype}; expected floats")
    if arr.shape != (n, k):
        raise ValueError(f"{source} returned costs of shape {arr.shape}; expected {(n, k)}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if not all_within(out, 0.0, MAX_MAGNITUDE):
        raise ValueError(f"{source} returned negative, NaN, infinite or huge costs")
    return out
