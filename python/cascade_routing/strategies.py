"""The four strategies of ALGORITHM.md §3, fitted to a cost budget (§2, §7).

All four share one interface: ``fit`` on logged data, ``next_model`` / ``select`` for one
decision, ``run`` / ``arun`` for the whole loop against real models, ``replay`` to evaluate on
logged data, and ``save`` / ``load`` for a versioned JSON policy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import inspect
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _backend
from .validation import float_array as finite_array
from .engine import standard_normals
from .validation import check_bounds as _check_bounds
from .validation import check_psd as _check_psd
from .estimators import (
    ConstantCost,
    QualityEstimate,
    TwoPhaseCost,
    TwoPhaseQuality,
    as_cost_estimate,
    as_quality_estimate,
)

log = logging.getLogger(__name__)

#: Queries: any sequence, or a NumPy array (row indices for table-backed estimators).
Queries = Union[Sequence[Any], NDArray[Any]]

SCHEMA_VERSION = 1
POLICY_FORMAT = "cascade-routing-policy"

#: Fit status values reported in ``fit_info_["status"]``.
FIT_OK = "ok"
FIT_BELOW_CHEAPEST = "budget_below_cheapest"
FIT_ABOVE_DEAREST = "budget_above_dearest"


class AllModelsFailedError(RuntimeError):
    """Every model the strategy could run on a query failed; the trace says why."""

    def __init__(self, message: str, trace: list["Step"]) -> None:
        super().__init__(message)
        self.trace = trace


@dataclass(frozen=True)
class Step:
    """One step of :meth:`Strategy.run`: the plan made and the model call it led to."""

    index: int
    model: str | None
    supermodel: tuple[str, ...]
    utility: float
    lam: float
    estimated_cost: float
    actual_cost: float | None = None
    status: str = "ok"  # ok | stop | failed | timeout | invalid
    error: str | None = None
    seconds: float = 0.0


@dataclass
class RunResult:
    """Outcome of :meth:`Strategy.run`: the selected answer and everything that led to it."""

    answer: Any
    model: str | None
    answers: dict[str, Any]
    cost: float
    trace: list[Step] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplayResult:
    """Per-query outcome of a strategy replayed on logged data (model indices as given)."""

    selected: NDArray[np.int64]
    n_run: NDArray[np.int64]
    order: NDArray[np.int64]
    cost: NDArray[np.float64]
    quality: NDArray[np.float64]

    @property
    def mean_cost(self) -> float:
        return float(self.cost.mean()) if self.cost.size else 0.0

    @property
    def mean_quality(self) -> float:
        return float(self.quality.mean()) if self.quality.size else 0.0


_NO_SD = np.zeros(0)
_NO_CHOL = np.zeros((0, 0))


def query_coin(query: Any, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the query and the seed (the γ coin of §2)."""
    if isinstance(query, np.generic):
        query = query.item()  # np.int64(3) and 3 are the same query
    digest = hashlib.blake2b(f"{seed}\x1f{query!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


# --------------------------------------------------------------------------- validation helpers


def _truth_table(value: ArrayLike, name: str, n: int, k: int) -> NDArray[np.float64]:
    return finite_array(
        value, name, 2, shape=(n, k), layout="queries x models", hint="drop or fill those rows first"
    )


def _check_answers(answers: Sequence[Sequence[Any]], n: int, k: int, full: bool) -> None:
    if len(answers) != n:
        raise ValueError(f"answers has {len(answers)} rows; expected one per query ({n})")
    for i, row in enumerate(answers):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
            raise TypeError(f"answers[{i}] must be a sequence with one entry per model")
        if len(row) != k:
            raise ValueError(f"answers[{i}] has {len(row)} entries; expected one per model ({k})")
        if full and any(a is None for a in row):
            raise ValueError(f"answers[{i}] has a missing answer; fitting needs every model's answer")


# --------------------------------------------------------------------------- replay engines


class _Replayer:
    """Replays one strategy over training queries for many λ values (§7)."""

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> ReplayResult:
        raise NotImplementedError


class _CompiledReplayer(_Replayer):
    """Two-phase tables: the whole replay runs in the compiled core, GIL released."""

    def __init__(self, strategy: "Strategy", rows: NDArray[np.int64], quality: NDArray[np.float64], cost: NDArray[np.float64], n_threads: int) -> None:
        qe = strategy.quality_estimator
        ce = strategy.cost_estimator
        perm = strategy.order_
        n = rows.shape[0]
        k = perm.shape[0]

        def take(table: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.ascontiguousarray(table[rows][:, perm])

        self.ante_q = take(qe.ante_mean)
        self.post_q = take(qe.post_mean)
        self.use_sd = qe.ante_var is not None
        if qe.ante_var is not None and qe.post_var is not None:
            self.ante_sd = np.sqrt(take(qe.ante_var))
            self.post_sd = np.sqrt(take(qe.post_var))
        else:
            self.ante_sd = self.post_sd = np.zeros((n, 0))
        if isinstance(ce, ConstantCost):
            self.ante_c = np.ascontiguousarray(np.tile(ce.costs[perm], (n, 1)))
            self.post_c = self.ante_c
        else:
            self.ante_c = take(ce.ante)
            self.post_c = take(ce.post)
        self.true_q = np.ascontiguousarray(quality[:, perm])
        self.true_c = np.ascontiguousarray(cost[:, perm])
        self.strategy = strategy
        self.n_threads = n_threads
        self.normals = standard_normals(k, strategy.n_samples, strategy.sample_seed) if self.use_sd else np.zeros((0, k))

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> ReplayResult:
        s = self.strategy
        n, k = self.ante_q.shape
        lam = np.ascontiguousarray(lambdas, dtype=np.float64)
        is_threshold = isinstance(s, ThresholdCascade)
        thresholds = np.ascontiguousarray(1.0 - _expand(lam, k)) if is_threshold else np.zeros(k)
        search_lam = np.zeros(1) if is_threshold else lam
        sel, n_run, order, cst, qual = _backend.active().replay_two_phase(
            self.ante_q,
            self.post_q,
            self.ante_sd,
            self.post_sd,
            self.ante_c,
            self.post_c,
            self.true_q,
            self.true_c,
            search_lam,
            np.full(n, 1 if prefer_expensive else 0, dtype=np.uint8),
            self.normals,
            self.use_sd,
            1 if is_threshold else 0,
            thresholds,
            s._depth(k),
            s.force_order,
            s.prefixes_only,
            True,
            s._digits(),
            is_threshold,
            *s.bounds_,
            n_threads=self.n_threads,
        )
        return _to_given_order(s.order_, np.asarray(sel), np.asarray(n_run), np.asarray(order), np.asarray(cst), np.asarray(qual))


class _RunSetEstimates:
    """Estimates of one run-set, filled in row by row as queries reach it."""

    def __init__(self, n: int, k: int) -> None:
        self.have = np.zeros(n, dtype=bool)
        self.mean = np.zeros((n, k))
        self.cost = np.zeros((n, k))
        self.var: NDArray[np.float64] | None = None
        self.cov: NDArray[np.float64] | None = None


class _CachedReplayer(_Replayer):
    """Any estimators: step-synchronous replay with batched search.

    Estimates depend on the run-set, not on λ, so they are cached per (run-set, query) across
    every λ tried; each step calls the estimators once per run-set, for the queries that reach
    it and have no estimate yet.
    """

    def __init__(self, strategy: "Strategy", queries: Queries, answers: Sequence[Sequence[Any]], quality: NDArray[np.float64], cost: NDArray[np.float64], n_threads: int) -> None:
        self.strategy = strategy
        self.queries = list(queries)
        self.answers = [list(row) for row in answers]
        self.true_q = np.ascontiguousarray(quality[:, strategy.order_])
        self.true_c = np.ascontiguousarray(cost[:, strategy.order_])
        self.n_threads = n_threads
        self._cache: dict[bytes, _RunSetEstimates] = {}

    def _estimates(self, ran_internal: NDArray[np.bool_], rows: NDArray[np.int64]) -> _RunSetEstimates:
        """The cache entry of a run-set, with estimates for at least ``rows``."""
        n, k = self.true_q.shape
        entry = self._cache.setdefault(ran_internal.tobytes(), _RunSetEstimates(n, k))
        missing = rows[~entry.have[rows]]
        if missing.size:
            s = self.strategy
            ran_given = np.zeros_like(ran_internal)
            ran_given[s.order_] = ran_internal
            partial = [[a if ran_given[j] else None for j, a in enumerate(self.answers[r])] for r in missing]
            est, cst = s._estimate([self.queries[r] for r in missing], partial)
            entry.mean[missing] = est.mean
            entry.cost[missing] = cst
            if est.var is not None:
                if entry.var is None:
                    entry.var = np.zeros((n, k))
                entry.var[missing] = est.var
            if est.cov is not None:
                if entry.cov is None:
                    entry.cov = np.zeros((n, k, k))
                entry.cov[missing] = est.cov
            entry.have[missing] = True
        return entry

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> ReplayResult:
        s = self.strategy
        n, k = self.true_q.shape
        ran = np.zeros((n, k), dtype=bool)
        order = np.full((n, k), -1, dtype=np.int64)
        n_run = np.zeros(n, dtype=np.int64)
        total_cost = np.zeros(n)
        active = np.ones(n, dtype=bool)
        post_q = np.zeros((n, k))
        is_threshold = isinstance(s, ThresholdCascade)
        for j in range(k):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            mean = np.empty((idx.size, k))
            cst = np.empty((idx.size, k))
            var = cov = None
            groups: dict[bytes, list[int]] = {}
            for pos, row in enumerate(idx):
                groups.setdefault(ran[row].tobytes(), []).append(pos)
            for positions in groups.values():
                rows = idx[positions]
                entry = self._estimates(ran[rows[0]].copy(), rows)
                mean[positions] = entry.mean[rows]
                cst[positions] = entry.cost[rows]
                if entry.var is not None:
                    if var is None:
                        var = np.empty((idx.size, k))
                    var[positions] = entry.var[rows]
                if entry.cov is not None:
                    if cov is None:
                        cov = np.empty((idx.size, k, k))
                    cov[positions] = entry.cov[rows]
            lam_steps = _expand(lambdas, k)
            if is_threshold:
                if j == 0:
                    nm = np.zeros(idx.size, dtype=np.int64)
                else:
                    # After model j-1 (its post-hoc estimate): continue iff below 1 - λ_{j-1}.
                    cont = (mean[:, j - 1] < 1.0 - lam_steps[j - 1]) & (j < s._depth(k))
                    nm = np.where(cont, j, -1)
            else:
                nm = s._search_batch(mean, cst, float(lam_steps[j]), var, cov, ran[idx], prefer_expensive, self.n_threads)
            stop = nm < 0
            active[idx[stop]] = False
            go = idx[~stop]
            chosen = nm[~stop]
            ran[go, chosen] = True
            order[go, j] = chosen
            n_run[go] += 1
            total_cost[go] += self.true_c[go, chosen]
        # Post-hoc estimates given each query's final run-set, for the selection.
        final: dict[bytes, list[int]] = {}
        for q_row in range(n):
            final.setdefault(ran[q_row].tobytes(), []).append(q_row)
        for rows_list in final.values():
            rows = np.asarray(rows_list, dtype=np.int64)
            post_q[rows] = self._estimates(ran[rows[0]].copy(), rows).mean[rows]
        selected = np.full(n, -1, dtype=np.int64)
        quality = np.zeros(n)
        for r in range(n):
            if n_run[r] == 0:
                continue
            if is_threshold:
                sel = int(order[r, n_run[r] - 1])
            else:
                cand = np.flatnonzero(ran[r])
                sel = int(cand[np.argmax(post_q[r, cand])])
            selected[r] = sel
            quality[r] = self.true_q[r, sel]
        return _to_given_order(s.order_, selected, n_run, order, total_cost, quality)


def _expand(lambdas: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """One multiplier per step ``0..k-1``; the last given is reused for later steps."""
    lam = np.asarray(lambdas, dtype=np.float64)
    out = np.empty(k)
    for j in range(k):
        out[j] = lam[min(j, lam.shape[0] - 1)]
    return out


def _to_given_order(perm: NDArray[np.int64], selected: NDArray[np.int64], n_run: NDArray[np.int64], order: NDArray[np.int64], cost: NDArray[np.float64], quality: NDArray[np.float64]) -> ReplayResult:
    sel = np.where(selected >= 0, perm[np.maximum(selected, 0)], -1)
    ordr = np.where(order >= 0, perm[np.maximum(order, 0)], -1)
    return ReplayResult(sel.astype(np.int64), n_run.astype(np.int64), ordr.astype(np.int64), cost.astype(np.float64), quality.astype(np.float64))


# --------------------------------------------------------------------------- strategies


class Strategy:
    """Shared machinery of the four strategies.

    Parameters
    ----------
    quality_estimator, cost_estimator
        Objects with ``predict(queries, answers)`` (see :mod:`cascade_routing.estimators`).
    models : sequence of str
        Model names, in the column order the estimators use.
    order : {"cost", "given"} or sequence of str
        The model order (for cascades and ``force_order``): ascending mean training cost
        (set by ``fit``), the given order, or an explicit list of names.
    rounding_digits : int or None
        Utilities are rounded to this many decimals before comparing (ties: the γ coin).
    n_samples, sample_seed : int
        Sobol samples for expected maxima under uncertainty.
    seed : int
        Seed of the per-query γ coin.
    quality_bounds : (float, float), optional
        Clip quality samples to these bounds when computing expected maxima (e.g. ``(0, 1)``
        for probabilities of a correct answer); see :func:`cascade_routing.search_supermodel`.
    """

    kind = "strategy"
    max_depth: int | None = None
    force_order = False
    prefixes_only = False

    def __init__(
        self,
        quality_estimator: Any,
        cost_estimator: Any,
        models: Sequence[str],
        *,
        order: str | Sequence[str] = "cost",
        rounding_digits: int | None = 8,
        n_samples: int = 128,
        sample_seed: int = 0,
        seed: int = 0,
        quality_bounds: tuple[float, float] | None = None,
    ) -> None:
        if not hasattr(quality_estimator, "predict"):
            raise TypeError("quality_estimator must have a predict(queries, answers) method")
        if not hasattr(cost_estimator, "predict"):
            raise TypeError("cost_estimator must have a predict(queries, answers) method")
        names = list(models)
        if not names or not all(isinstance(m, str) and m for m in names):
            raise ValueError("models must be a non-empty sequence of model names (strings)")
        if len(set(names)) != len(names):
            raise ValueError(f"models contains duplicates: {names}")
        self.quality_estimator = quality_estimator
        self.cost_estimator = cost_estimator
        self.models = tuple(names)
        self._index = {m: i for i, m in enumerate(self.models)}
        if isinstance(order, str) and order not in ("cost", "given"):
            raise ValueError(f"order must be 'cost', 'given' or a list of model names, got {order!r}")
        self.order = order if isinstance(order, str) else tuple(order)
        if isinstance(order, str):
            self.order_ = np.arange(len(names), dtype=np.int64)
        else:
            self.order_ = self._order_from_names(order)
        if rounding_digits is not None and (not isinstance(rounding_digits, int) or not 0 <= rounding_digits <= 15):
            raise ValueError("rounding_digits must be None or an int between 0 and 15")
        self.rounding_digits = rounding_digits
        self.n_samples = int(n_samples)
        standard_normals(1, self.n_samples, 0)  # validates n_samples early
        self.sample_seed = int(sample_seed)
        self.seed = int(seed)
        self.bounds_ = _check_bounds(quality_bounds)
        self.quality_bounds = None if quality_bounds is None else self.bounds_
        self.lambdas_: NDArray[np.float64] | None = None
        self.lambdas_expensive_: NDArray[np.float64] | None = None
        self.gamma_: float = 0.0
        self.fit_info_: dict[str, Any] = {}

    # ------------------------------------------------------------------ settings

    def _order_from_names(self, names: Sequence[str]) -> NDArray[np.int64]:
        unknown = [m for m in names if m not in self._index]
        if unknown:
            raise ValueError(f"order names unknown models {unknown}; known: {list(self.models)}")
        if sorted(names) != sorted(self.models):
            raise ValueError("order must list every model exactly once")
        return np.array([self._index[m] for m in names], dtype=np.int64)

    def _depth(self, k: int) -> int:
        return k if self.max_depth is None else min(self.max_depth, k)

    def _digits(self) -> int:
        return -1 if self.rounding_digits is None else self.rounding_digits

    def settings(self) -> dict[str, Any]:
        """Constructor settings saved with the policy."""
        return {
            "max_depth": self.max_depth,
            "force_order": self.force_order,
            "rounding_digits": self.rounding_digits,
            "n_samples": self.n_samples,
            "sample_seed": self.sample_seed,
            "seed": self.seed,
            # JSON has no infinity: an unbounded side is null.
            "quality_bounds": None if self.quality_bounds is None else [
                b if math.isfinite(b) else None for b in self.quality_bounds
            ],
        }

    @property
    def model_order(self) -> tuple[str, ...]:
        """Model names in the order the strategy considers them."""
        return tuple(self.models[i] for i in self.order_)

    def _check_fitted(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self.lambdas_ is None:
            raise RuntimeError(
                f"{type(self).__name__} has no multipliers yet; call fit(...) or set_lambdas(...)"
            )
        alt = self.lambdas_ if self.lambdas_expensive_ is None else self.lambdas_expensive_
        return self.lambdas_, alt

    def set_lambdas(self, lambdas: float | Sequence[float], *, lambdas_expensive: float | Sequence[float] | None = None, gamma: float = 0.0) -> "Strategy":
        """Use the given multipliers instead of fitting them (one value or one per step)."""
        lam = np.atleast_1d(np.asarray(lambdas, dtype=np.float64))
        if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)):
            raise ValueError("lambdas must be a finite number or a 1-D sequence of them")
        if not isinstance(self, ThresholdCascade) and np.any(lam < 0):
            raise ValueError("lambdas must be non-negative")
        self.lambdas_ = lam
        self.lambdas_expensive_ = None if lambdas_expensive is None else np.atleast_1d(np.asarray(lambdas_expensive, dtype=np.float64))
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError("gamma must be in [0, 1]")
        self.gamma_ = float(gamma)
        return self

    # ------------------------------------------------------------------ estimation

    def _estimate(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """Estimator outputs for ``queries``, columns in the internal model order."""
        n, k = len(queries), len(self.models)
        est = as_quality_estimate(self.quality_estimator.predict(queries, answers), n, k)
        cst = as_cost_estimate(self.cost_estimator.predict(queries, answers), n, k)
        p = self.order_
        if p.shape[0] and p[0] == 0 and bool((p[1:] > p[:-1]).all()):
            return est, cst  # the identity order: nothing to permute
        mean = est.mean[:, p]
        var = None if est.var is None else est.var[:, p]
        cov = None if est.cov is None else est.cov[:, p][:, :, p]
        return QualityEstimate(mean, var, cov), cst[:, p]

    def _search_batch(self, mean: NDArray[np.float64], cst: NDArray[np.float64], lam: float, var: NDArray[np.float64] | None, cov: NDArray[np.float64] | None, ran: NDArray[np.bool_], prefer_expensive: bool, n_threads: int) -> NDArray[np.int64]:
        n, k = mean.shape
        be = _backend.active()
        if var is not None:
            mode, sd, chol = 1, np.ascontiguousarray(np.sqrt(var)), np.zeros((n, 0, 0))
        elif cov is not None:
            _check_psd(cov, "covariance returned by the quality estimator")
            mode, sd = 2, np.zeros((n, 0))
            chol = np.ascontiguousarray(np.stack([be.cholesky_psd(np.ascontiguousarray(c)) for c in cov]))
        else:
            mode, sd, chol = 0, np.zeros((n, 0)), np.zeros((n, 0, 0))
        normals = standard_normals(k, self.n_samples, self.sample_seed) if mode else np.zeros((0, k))
        nm = be.search_batch(
            np.ascontiguousarray(mean), np.ascontiguousarray(cst), np.full(n, lam), mode, sd, chol, normals,
            np.ascontiguousarray(ran, dtype=np.uint8), self._depth(k), self.force_order, self.prefixes_only,
            True, np.full(n, 1 if prefer_expensive else 0, dtype=np.uint8), self._digits(), *self.bounds_,
            n_threads=n_threads,
        )[0]
        return np.asarray(nm, dtype=np.int64)

    # ------------------------------------------------------------------ one decision

    def _plan(self, query: Any, answers: Sequence[Any], exclude: frozenset[int] = frozenset()) -> tuple[int, tuple[int, ...], float, float, float]:
        """(next model (given index) or -1, supermodel (given indices), utility, λ, est. cost of next)."""
        lam_cheap, lam_exp = self._check_fitted()
        k = len(self.models)
        _check_answers([answers], 1, k, full=False)
        est, cst = self._estimate([query], [answers])
        perm = self.order_
        ran = np.array([answers[p] is not None for p in perm.tolist()], dtype=np.bool_)
        keep = np.array([int(p) not in exclude for p in perm], dtype=bool) if exclude else None
        expensive = self.gamma_ > 0.0 and query_coin(query, self.seed) < self.gamma_
        lams = lam_exp if expensive else lam_cheap
        j = int(ran.sum() if keep is None else ran[keep].sum())
        if isinstance(self, ThresholdCascade):
            # The threshold after model m_{j-1} is 1 - λ_{j-1}.
            lam = float(lams[min(max(j - 1, 0), lams.shape[0] - 1)])
            # Run in model order; continue after model j-1 iff its post-hoc estimate < 1 - λ.
            if j >= self._depth(k):
                return -1, tuple(int(perm[i]) for i in np.flatnonzero(ran)), float("nan"), lam, 0.0
            if j > 0:
                last = int(np.flatnonzero(ran)[-1])
                if not est.mean[0, last] < 1.0 - lam:
                    return -1, tuple(int(perm[i]) for i in np.flatnonzero(ran)), float("nan"), lam, 0.0
            nxt = next((i for i in range(k) if not ran[i] and (keep is None or keep[i])), -1)
            if nxt < 0:
                return -1, tuple(int(perm[i]) for i in np.flatnonzero(ran)), float("nan"), lam, 0.0
            sup = tuple(sorted(int(perm[i]) for i in np.flatnonzero(ran)) + [int(perm[nxt])])
            return int(perm[nxt]), sup, float("nan"), lam, float(cst[0, nxt])
        lam = float(lams[min(j, lams.shape[0] - 1)])
        # Failed models are left out of the search; without any, no copies are needed.
        sub = np.arange(k) if keep is None else np.flatnonzero(keep)
        kk = sub.shape[0]
        if kk == 0:
            return -1, (), float("nan"), lam, 0.0
        be = _backend.active()
        if keep is None:
            q, c = est.mean[0], cst[0]
        else:
            q, c = np.ascontiguousarray(est.mean[0, sub]), np.ascontiguousarray(cst[0, sub])
        if est.var is not None:
            mode, sd, chol = 1, np.sqrt(est.var[0] if keep is None else est.var[0, sub]), _NO_CHOL
        elif est.cov is not None:
            cv = np.ascontiguousarray(est.cov[0][np.ix_(sub, sub)])
            _check_psd(cv, "covariance returned by the quality estimator")
            mode, sd, chol = 2, np.zeros(0), be.cholesky_psd(cv)
        else:
            mode, sd, chol = 0, _NO_SD, _NO_CHOL
        normals = standard_normals(kk, self.n_samples, self.sample_seed) if mode else np.zeros((0, kk))
        ran_sub = (ran if keep is None else ran[sub]).astype(np.uint8)
        depth = min(self._depth(k), kk)
        if self.prefixes_only and np.any(ran_sub[: int(ran_sub.sum())] == 0):
            raise ValueError("a cascade runs models in order; answers must come from a prefix of the model order")
        nm, mask, util, _, _, _ = be.search(
            q, c, lam, mode, sd, chol, normals, ran_sub,
            max(depth, j), self.force_order, self.prefixes_only, True, expensive, self._digits(),
            *self.bounds_,
        )
        members = tuple(sorted(perm[sub[np.asarray(mask).nonzero()[0]]].tolist()))
        if nm < 0:
            return -1, members, float(util), lam, 0.0
        return int(perm[sub[nm]]), members, float(util), lam, float(c[nm])

    def next_model(self, query: Any, answers: Sequence[Any]) -> str | None:
        """The model to run next on ``query`` given the answers so far, or ``None`` to stop."""
        nm = self._plan(query, answers)[0]
        return None if nm < 0 else self.models[nm]

    def next_models(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> list[str | None]:
        """:meth:`next_model` for many queries."""
        _check_answers(answers, len(queries), len(self.models), full=False)
        return [self.next_model(q, a) for q, a in zip(queries, answers)]

    def select(self, query: Any, answers: Sequence[Any]) -> str | None:
        """The model whose answer to return: the run model with the highest post-hoc estimate."""
        k = len(self.models)
        _check_answers([answers], 1, k, full=False)
        ran = [i for i, a in enumerate(answers) if a is not None]
        if not ran:
            return None
        est, _ = self._estimate([query], [answers])
        mean_given = np.empty(k)
        mean_given[self.order_] = est.mean[0]
        position = np.empty(k, dtype=np.int64)
        position[self.order_] = np.arange(k)
        # Ties go to the model earliest in the model order, as in the compiled replay.
        best = max(ran, key=lambda i: (mean_given[i], -position[i]))
        return self.models[best]

    # ------------------------------------------------------------------ the loop

    def _parse_response(self, name: str, value: Any, estimated: float) -> tuple[Any, float]:
        if isinstance(value, tuple) and len(value) == 2:
            answer, cost = value
            if isinstance(cost, bool) or not isinstance(cost, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} returned a cost of type {type(cost).__name__}")
            cost = float(cost)
            if not math.isfinite(cost) or cost < 0:
                raise ValueError(f"{name} returned an invalid cost {cost!r}")
        else:
            answer, cost = value, estimated
        if answer is None:
            raise ValueError(f"{name} returned no answer (None)")
        return answer, cost

    def _check_answer_usable(self, query: Any, answers: list[Any]) -> None:
        """An answer the estimators cannot digest is treated as a failed call."""
        self._estimate([query], [answers])

    def _finish(self, query: Any, answers: list[Any], trace: list[Step], failed: dict[str, str], total: float) -> RunResult:
        if all(a is None for a in answers):
            raise AllModelsFailedError(
                f"no model produced an answer for this query ({len(failed)} failed: "
                + "; ".join(f"{m}: {e}" for m, e in failed.items()) + ")",
                trace,
            )
        chosen = self.select(query, answers)
        assert chosen is not None
        return RunResult(
            answers[self._index[chosen]],
            chosen,
            {m: a for m, a in zip(self.models, answers) if a is not None},
            total,
            trace,
            failed,
        )

    def _record(self, idx: int, query: Any, answers: list[Any], value: Any, error: BaseException | None, timed_out: bool, plan: tuple[int, tuple[int, ...], float, float, float], started: float, failed: dict[str, str], excluded: set[int]) -> tuple[Step, float]:
        nm, sup, util, lam, est_cost = plan
        name = self.models[nm]
        sup_names = tuple(self.models[i] for i in sup)
        seconds = time.perf_counter() - started
        status, msg, actual = "ok", None, None
        if timed_out:
            status, msg = "timeout", "the call timed out"
        elif error is not None:
            status, msg = "failed", f"{type(error).__name__}: {error}"
        else:
            try:
                answer, actual = self._parse_response(name, value, est_cost)
                answers[nm] = answer
                try:
                    self._check_answer_usable(query, answers)
                except (TypeError, ValueError) as exc:
                    answers[nm] = None
                    raise ValueError(f"the estimators rejected its answer: {exc}") from exc
            except ValueError as exc:
                status, msg = "invalid", str(exc)
        if status != "ok":
            failed[name] = msg or status
            excluded.add(nm)
            log.warning("model %s %s on query %r: %s", name, status, query, msg)
        return Step(idx, name, sup_names, util, lam, est_cost, actual, status, msg, seconds), (actual or 0.0)

    def _plan_or_stop(self, idx: int, query: Any, answers: list[Any], excluded: set[int], trace: list[Step]) -> tuple[int, tuple[int, ...], float, float, float] | None:
        """The next step's plan, or ``None`` after recording the stop in ``trace``."""
        plan = self._plan(query, answers, frozenset(excluded))
        if plan[0] >= 0:
            return plan
        members = tuple(self.models[i] for i in plan[1])
        trace.append(Step(idx, None, members, plan[2], plan[3], 0.0, None, "stop"))
        return None

    def run(self, query: Any, call_model: Callable[[str, Any], Any], *, timeout: float | None = None) -> RunResult:
        """Decide, call ``call_model(name, query)``, record, re-plan, until the strategy stops.

        ``call_model`` returns the answer, or ``(answer, cost)`` with the actual cost. A call
        that raises, times out (``timeout`` seconds) or returns ``None`` / an invalid cost is
        recorded as failed and that model is excluded; the loop re-plans without it. Raises
        :class:`AllModelsFailedError` only when no model produced an answer.
        """
        answers: list[Any] = [None] * len(self.models)
        trace: list[Step] = []
        failed: dict[str, str] = {}
        excluded: set[int] = set()
        total = 0.0
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1) if timeout is not None else None
        try:
            for idx in range(2 * len(self.models) + 1):
                plan = self._plan_or_stop(idx, query, answers, excluded, trace)
                if plan is None:
                    break
                name = self.models[plan[0]]
                started = time.perf_counter()
                value, error, timed_out = None, None, False
                if pool is None:
                    try:
                        value = call_model(name, query)
                    except Exception as exc:  # the user's model failed: record and re-plan
                        error = exc
                else:
                    future = pool.submit(call_model, name, query)
                    try:
                        value = future.result(timeout=timeout)
                    except Exception as exc:
                        if future.done():
                            error = exc  # raised by the model itself
                        else:
                            timed_out = True
                            # A hung call keeps its thread; later calls get a fresh one.
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
                step, actual = self._record(idx, query, answers, value, error, timed_out, plan, started, failed, excluded)
                trace.append(step)
                total += actual
        finally:
            if pool is not None:
                pool.shutdown(wait=False)
        return self._finish(query, answers, trace, failed, total)

    async def arun(self, query: Any, call_model: Callable[[str, Any], Awaitable[Any] | Any], *, timeout: float | None = None) -> RunResult:
        """:meth:`run` for asynchronous model calls (``call_model`` may be async or not)."""
        answers: list[Any] = [None] * len(self.models)
        trace: list[Step] = []
        failed: dict[str, str] = {}
        excluded: set[int] = set()
        total = 0.0
        for idx in range(2 * len(self.models) + 1):
            plan = self._plan_or_stop(idx, query, answers, excluded, trace)
            if plan is None:
                break
            name = self.models[plan[0]]
            started = time.perf_counter()
            value, error, timed_out = None, None, False
            try:
                result = call_model(name, query)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    done, _ = await asyncio.wait({task}, timeout=timeout)
                    if task in done:
                        value = task.result()
                    else:
                        timed_out = True
                        task.cancel()
                else:
                    value = result
            except Exception as exc:  # the user's model failed: record and re-plan
                error = exc
            step, actual = self._record(idx, query, answers, value, error, timed_out, plan, started, failed, excluded)
            trace.append(step)
            total += actual
        return self._finish(query, answers, trace, failed, total)

    # ------------------------------------------------------------------ replay and fitting

    def _replayer(self, queries: Queries, answers: Sequence[Sequence[Any]], quality: NDArray[np.float64], cost: NDArray[np.float64], n_threads: int) -> _Replayer:
        qe, ce = self.quality_estimator, self.cost_estimator
        rows = np.asarray(queries)
        table_queries = rows.ndim == 1 and (rows.size == 0 or np.issubdtype(rows.dtype, np.integer))
        if (
            table_queries
            and type(qe) is TwoPhaseQuality
            and isinstance(ce, (TwoPhaseCost, ConstantCost))
            and qe.n_models == len(self.models)
            and ce.n_models == len(self.models)
        ):
            n_rows = qe.ante_mean.shape[0]
            if rows.size and (rows.min() < 0 or rows.max() >= n_rows or (not isinstance(ce, ConstantCost) and rows.max() >= ce.ante.shape[0])):
                raise ValueError("queries hold row indices outside the estimators' tables")
            return _CompiledReplayer(self, rows.astype(np.int64), quality, cost, n_threads)
        return _CachedReplayer(self, queries, answers, quality, cost, n_threads)

    def _validate_logged(self, queries: Queries, answers: Sequence[Sequence[Any]], quality: ArrayLike, cost: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        n, k = len(queries), len(self.models)
        if n == 0:
            raise ValueError("queries is empty; pass at least one logged query")
        _check_answers(answers, n, k, full=True)
        q = _truth_table(quality, "quality", n, k)
        c = _truth_table(cost, "cost", n, k)
        if np.any(c < 0):
            raise ValueError("cost contains negative values")
        return q, c

    def replay(self, queries: Queries, answers: Sequence[Sequence[Any]], quality: ArrayLike, cost: ArrayLike, *, engine: str = "compiled", n_threads: int = 1) -> ReplayResult:
        """Run the fitted strategy on logged data (every model's answer known) and score it.

        Each query uses the γ coin of :func:`query_coin`. ``engine="python"`` replays with
        one :meth:`next_model` call per query and step (slow; a check of the fast path).
        """
        q, c = self._validate_logged(queries, answers, quality, cost)
        lam_cheap, lam_exp = self._check_fitted()
        coins = np.array([query_coin(x, self.seed) < self.gamma_ for x in queries], dtype=bool)
        if engine == "python":
            return self._replay_python(queries, answers, q, c)
        if engine != "compiled":
            raise ValueError(f"engine must be 'compiled' or 'python', got {engine!r}")
        rep = self._replayer(queries, answers, q, c, n_threads)
        cheap = rep.replay(lam_cheap, False)
        if not coins.any():
            return cheap
        exp = rep.replay(lam_exp, True)
        pick = coins
        return ReplayResult(
            np.where(pick, exp.selected, cheap.selected),
            np.where(pick, exp.n_run, cheap.n_run),
            np.where(pick[:, None], exp.order, cheap.order),
            np.where(pick, exp.cost, cheap.cost),
            np.where(pick, exp.quality, cheap.quality),
        )

    def _replay_python(self, queries: Queries, answers: Sequence[Sequence[Any]], quality: NDArray[np.float64], cost: NDArray[np.float64]) -> ReplayResult:
        n, k = quality.shape
        selected = np.full(n, -1, dtype=np.int64)
        n_run = np.zeros(n, dtype=np.int64)
        order = np.full((n, k), -1, dtype=np.int64)
        total = np.zeros(n)
        qual = np.zeros(n)
        for r, (query, full) in enumerate(zip(queries, answers)):
            seen: list[Any] = [None] * k
            for j in range(k):
                nm = self._plan(query, seen)[0]
                if nm < 0:
                    break
                seen[nm] = full[nm]
                order[r, j] = nm
                n_run[r] += 1
                total[r] += cost[r, nm]
            if n_run[r]:
                if isinstance(self, ThresholdCascade):
                    sel = int(order[r, n_run[r] - 1])
                else:
                    name = self.select(query, seen)
                    assert name is not None
                    sel = self._index[name]
                selected[r] = sel
                qual[r] = quality[r, sel]
        return ReplayResult(selected, n_run, order, total, qual)

    def _lambda_bounds(self, rep: _Replayer) -> tuple[float, float]:
        """Multipliers at which the strategy spends the most / the least."""
        return 0.0, 1.0

    def fit(
        self,
        queries: Queries,
        answers: Sequence[Sequence[Any]],
        quality: ArrayLike,
        cost: ArrayLike,
        *,
        budget: float,
        lambdas: str = "constant",
        n_iter: int | None = None,
        n_trials: int = 200,
        seed: int | None = None,
        n_threads: int = 1,
        progress: Callable[[int, int], None] | None = None,
    ) -> "Strategy":
        """Fit the multipliers ``λ`` and the coin ``γ`` so that the mean cost meets ``budget``.

        Parameters
        ----------
        queries, answers
            Training queries and every model's answer to each (``answers[i][j]``).
        quality, cost : array_like, shape (n, k)
            Ground-truth quality of each answer and cost of each call.
        budget : float
            Mean cost per query to spend.
        lambdas : {"constant", "per_step"}
            One multiplier for every step (bound doubling + bisection), or one per step (a
            black-box search started from the constant solution: optuna's TPE if installed,
            else a seeded random search), rescaled to meet the budget.
        n_iter : int, optional
            Bisection steps (default 30; 100 for :class:`Router`).
        n_trials : int
            Evaluations of the per-step search.
        seed : int, optional
            Seed of the per-step search and of the γ coin (default: the constructor's).
        progress : callable, optional
            Called as ``progress(done, total)`` after each replay.
        """
        started = time.perf_counter()
        q, c = self._validate_logged(queries, answers, quality, cost)
        if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
            raise TypeError(f"budget must be a number, got {type(budget).__name__}")
        budget = float(budget)
        if not math.isfinite(budget) or budget < 0:
            raise ValueError(f"budget must be a finite non-negative number, got {budget}")
        if lambdas not in ("constant", "per_step"):
            raise ValueError(f"lambdas must be 'constant' or 'per_step', got {lambdas!r}")
        if seed is not None:
            self.seed = int(seed)
        if isinstance(self.order, str) and self.order == "cost":
            self.order_ = np.argsort(c.mean(axis=0), kind="stable").astype(np.int64)
        iters = int(n_iter) if n_iter is not None else self.default_iterations
        rep = self._replayer(queries, answers, q, c, n_threads)
        total = iters + 45 + (n_trials if lambdas == "per_step" else 0)
        counter = {"replays": 0}

        def evaluate(lam: NDArray[np.float64], expensive: bool) -> ReplayResult:
            res = rep.replay(lam, expensive)
            counter["replays"] += 1
            if progress is not None:
                progress(min(counter["replays"], total), total)
            return res

        lam_c, lam_e, gamma, status, cheap_res, exp_res = self._fit_scale(evaluate, np.ones(1), budget, iters)
        if lambdas == "per_step" and self._n_steps(len(self.models)) > 1 and status == FIT_OK:
            shape = self._search_per_step(evaluate, lam_c, budget, n_trials, self.seed)
            if shape is not None:
                alt = self._fit_scale(evaluate, shape, budget, iters)
                if _mixture(alt[2], alt[4], alt[5])[1] > _mixture(gamma, cheap_res, exp_res)[1] + 1e-12:
                    lam_c, lam_e, gamma, status, cheap_res, exp_res = alt
        self.lambdas_ = lam_c
        self.lambdas_expensive_ = lam_e
        self.gamma_ = gamma
        exp_cost, exp_quality = _mixture(gamma, cheap_res, exp_res)
        self.fit_info_ = {
            "budget": budget,
            "status": status,
            "expected_cost": exp_cost,
            "expected_quality": exp_quality,
            "cost_cheap": cheap_res.mean_cost,
            "cost_expensive": exp_res.mean_cost,
            "lambdas": "per_step" if lam_c.size > 1 else "constant",
            "replays": counter["replays"],
            "replay_engine": "compiled" if isinstance(rep, _CompiledReplayer) else "cached",
            "seconds": time.perf_counter() - started,
            "n_queries": len(queries),
        }
        if status != FIT_OK:
            log.warning(
                "%s: budget %.6g is %s (achievable mean cost %.6g .. %.6g); using the nearest policy",
                type(self).__name__, budget, "below the cheapest" if status == FIT_BELOW_CHEAPEST else "above the dearest",
                cheap_res.mean_cost, exp_res.mean_cost,
            )
        log.info("%s fitted: %s", type(self).__name__, self.fit_info_)
        return self

    default_iterations = 30

    def _n_steps(self, k: int) -> int:
        return self._depth(k)

    def _fit_scale(self, evaluate: Callable[[NDArray[np.float64], bool], ReplayResult], shape: NDArray[np.float64], budget: float, iters: int) -> tuple[NDArray[np.float64], NDArray[np.float64], float, str, ReplayResult, ReplayResult]:
        """Scale ``s`` with ``λ = s · shape``: the smallest that meets the budget, then γ."""
        budget_tol = _with_tolerance(budget)
        lo_s, hi_s = self._scale_range(shape)
        dearest = evaluate(lo_s * shape, True)
        if dearest.mean_cost <= budget_tol:
            status = FIT_OK if dearest.mean_cost >= 2 * budget - budget_tol else FIT_ABOVE_DEAREST
            if status == FIT_ABOVE_DEAREST:
                return lo_s * shape, lo_s * shape, 1.0, status, dearest, dearest
        hi = self._initial_scale(shape, lo_s)
        res_hi = evaluate(hi * shape, False)
        lo = lo_s
        grow = 0
        while res_hi.mean_cost > budget_tol:
            if hi >= hi_s or grow > 60:
                # Even the cheapest policy overspends.
                return hi * shape, hi * shape, 0.0, FIT_BELOW_CHEAPEST, res_hi, res_hi
            lo, hi = hi, min(hi * 16.0, hi_s) if np.isfinite(hi_s) else hi * 16.0
            res_hi = evaluate(hi * shape, False)
            grow += 1
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if mid <= lo or mid >= hi:
                break
            res = evaluate(mid * shape, False)
            if res.mean_cost <= budget_tol:
                hi, res_hi = mid, res
            else:
                lo = mid
        res_lo = evaluate(lo * shape, True)
        c_a, c_b = res_hi.mean_cost, res_lo.mean_cost
        gamma = 0.0 if c_b <= c_a else float(np.clip((budget - c_a) / (c_b - c_a), 0.0, 1.0))
        return hi * shape, lo * shape, gamma, FIT_OK, res_hi, res_lo

    def _scale_range(self, shape: NDArray[np.float64]) -> tuple[float, float]:
        return 0.0, float("inf")

    def _initial_scale(self, shape: NDArray[np.float64], lo: float) -> float:
        return 1.0

    def _search_per_step(self, evaluate: Callable[[NDArray[np.float64], bool], ReplayResult], lam: NDArray[np.float64], budget: float, n_trials: int, seed: int) -> NDArray[np.float64] | None:
        """Black-box search for per-step multipliers around the constant solution."""
        k = len(self.models)
        steps = self._n_steps(k)
        base = max(float(lam[0]), 1e-12)
        budget_tol = _with_tolerance(budget)

        def score(logs: NDArray[np.float64]) -> float:
            res = evaluate(base * np.exp(logs), False)
            if res.mean_cost <= budget_tol:
                return res.mean_quality
            return res.mean_quality - 1e3 * (res.mean_cost - budget) / max(budget, 1e-300) - 1.0

        best_logs = np.zeros(steps)
        best = score(best_logs)
        optuna: Any
        try:
            import optuna
        except ImportError:
            optuna = None
        if optuna is not None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
            study.enqueue_trial({f"log_lam_{j}": 0.0 for j in range(steps)})

            def objective(trial: Any) -> float:
                logs = np.array([trial.suggest_float(f"log_lam_{j}", -4.0, 4.0) for j in range(steps)])
                return score(logs)

            study.optimize(objective, n_trials=max(n_trials - 1, 1))
            logs = np.array([study.best_params[f"log_lam_{j}"] for j in range(steps)])
            if study.best_value > best:
                best, best_logs = study.best_value, logs
        else:
            rng = np.random.default_rng(seed)
            for t in range(max(n_trials - 1, 1)):
                spread = 2.0 * (1.0 - t / max(n_trials, 1)) + 0.1
                cand = best_logs + rng.normal(0.0, spread, steps)
                cand = np.clip(cand, -4.0, 4.0)
                val = score(cand)
                if val > best:
                    best, best_logs = val, cand
        if not np.any(best_logs):
            return None
        return np.exp(best_logs)

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (what :meth:`save` writes)."""
        from . import __version__

        lam, alt = self._check_fitted()
        return {
            "format": POLICY_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "package_version": __version__,
            "strategy": type(self).__name__,
            "models": list(self.models),
            "order": list(self.model_order),
            "settings": self.settings(),
            "lambdas": lam.tolist(),
            "lambdas_expensive": alt.tolist(),
            "gamma": self.gamma_,
            "fit_info": _jsonable(self.fit_info_),
        }

    def save(self, path: str | Path) -> None:
        """Write the fitted policy as versioned JSON (estimators are not saved)."""
        data = self.to_dict()
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path, quality_estimator: Any, cost_estimator: Any, *, models: Sequence[str] | None = None) -> "Strategy":
        """Read a policy written by :meth:`save` and attach the estimators to it.

        ``models``, if given, must equal the saved model names (a check that the policy fits
        the estimators). Called on a subclass, the file must hold that strategy.
        """
        return load_policy(path, quality_estimator, cost_estimator, models=models, expected=None if cls is Strategy else cls)


def _with_tolerance(budget: float) -> float:
    """The budget plus the rounding error of a mean over queries (a cost equal to the budget
    but summed in another order must count as meeting it)."""
    return budget + 1e-12 * max(abs(budget), 1e-300)


def _mixture(gamma: float, cheap: ReplayResult, exp: ReplayResult) -> tuple[float, float]:
    return (
        (1 - gamma) * cheap.mean_cost + gamma * exp.mean_cost,
        (1 - gamma) * cheap.mean_quality + gamma * exp.mean_quality,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class Router(Strategy):
    """Routing: pick the one model with the best ``q̂ − λ ĉ`` before any model runs (§3.1)."""

    kind = "router"
    max_depth = 1
    default_iterations = 100

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out.pop("max_depth")
        out.pop("force_order")
        return out


class Cascade(Strategy):
    """The paper's optimal cascade: run models in order; stop at the best prefix (§3.3)."""

    kind = "cascade"
    force_order = True
    prefixes_only = True

    def __init__(self, quality_estimator: Any, cost_estimator: Any, models: Sequence[str], *, max_depth: int | None = None, **kwargs: Any) -> None:
        super().__init__(quality_estimator, cost_estimator, models, **kwargs)
        self.max_depth = _check_depth(max_depth)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out.pop("force_order")
        return out


class CascadeRouter(Strategy):
    """Cascade routing: at every step the best supermodel of models still worth running (§3.4)."""

    kind = "cascade_router"

    def __init__(self, quality_estimator: Any, cost_estimator: Any, models: Sequence[str], *, max_depth: int | None = None, force_order: bool = False, prefixes_only: bool = False, **kwargs: Any) -> None:
        super().__init__(quality_estimator, cost_estimator, models, **kwargs)
        self.max_depth = _check_depth(max_depth)
        self.force_order = bool(force_order) or bool(prefixes_only)
        self.prefixes_only = bool(prefixes_only)

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out["prefixes_only"] = self.prefixes_only
        return out


class ThresholdCascade(Strategy):
    """The classic cascade: after model ``j`` continue iff its post-hoc ``q̂_j < 1 − λ_j`` (§3.2).

    The answer is the last model run. ``λ`` may be negative here (a threshold above 1).
    """

    kind = "threshold_cascade"
    force_order = True

    def __init__(self, quality_estimator: Any, cost_estimator: Any, models: Sequence[str], *, max_depth: int | None = None, **kwargs: Any) -> None:
        super().__init__(quality_estimator, cost_estimator, models, **kwargs)
        self.max_depth = _check_depth(max_depth)
        self._post_range = (0.0, 1.0)

    def select(self, query: Any, answers: Sequence[Any]) -> str | None:
        """The last model run (the latest in the model order that has answered)."""
        k = len(self.models)
        _check_answers([answers], 1, k, full=False)
        ran = [int(p) for p in self.order_ if answers[int(p)] is not None]
        return self.models[ran[-1]] if ran else None

    def settings(self) -> dict[str, Any]:
        out = super().settings()
        out.pop("force_order")
        return out

    def _n_steps(self, k: int) -> int:
        return max(self._depth(k) - 1, 1)

    def _replayer(self, queries: Queries, answers: Sequence[Sequence[Any]], quality: NDArray[np.float64], cost: NDArray[np.float64], n_threads: int) -> _Replayer:
        rep = super()._replayer(queries, answers, quality, cost, n_threads)
        # The range of post-hoc estimates bounds the useful thresholds.
        if isinstance(rep, _CompiledReplayer):
            post = rep.post_q
        else:
            assert isinstance(rep, _CachedReplayer)
            post = rep._estimates(np.ones(len(self.models), dtype=bool), np.arange(len(rep.queries))).mean
        self._post_range = (float(post.min()), float(post.max()))
        return rep

    def _scale_range(self, shape: NDArray[np.float64]) -> tuple[float, float]:
        # Threshold t = 1 − λ: λ below 1 − max q̂ always continues, above 1 − min q̂ never does.
        lo_q, hi_q = self._post_range
        return 1.0 - hi_q - 1.0, 1.0 - lo_q + 1.0

    def _initial_scale(self, shape: NDArray[np.float64], lo: float) -> float:
        return lo + 1.0

    def _fit_scale(self, evaluate: Callable[[NDArray[np.float64], bool], ReplayResult], shape: NDArray[np.float64], budget: float, iters: int) -> tuple[NDArray[np.float64], NDArray[np.float64], float, str, ReplayResult, ReplayResult]:
        # Thresholds are additive, not multiplicative: bisect λ itself on its finite range.
        budget_tol = _with_tolerance(budget)
        lo, hi = self._scale_range(shape)
        dearest = evaluate(np.array([lo]), True)
        if dearest.mean_cost <= budget_tol:
            return np.array([lo]), np.array([lo]), 1.0, FIT_ABOVE_DEAREST if dearest.mean_cost < 2 * budget - budget_tol else FIT_OK, dearest, dearest
        res_hi = evaluate(np.array([hi]), False)
        if res_hi.mean_cost > budget_tol:
            return np.array([hi]), np.array([hi]), 0.0, FIT_BELOW_CHEAPEST, res_hi, res_hi
        for _ in range(max(iters, 40)):
            mid = 0.5 * (lo + hi)
            res = evaluate(np.array([mid]), False)
            if res.mean_cost <= budget_tol:
                hi, res_hi = mid, res
            else:
                lo = mid
        res_lo = evaluate(np.array([lo]), True)
        c_a, c_b = res_hi.mean_cost, res_lo.mean_cost
        gamma = 0.0 if c_b <= c_a else float(np.clip((budget - c_a) / (c_b - c_a), 0.0, 1.0))
        return np.array([hi]), np.array([lo]), gamma, FIT_OK, res_hi, res_lo


def _check_depth(max_depth: Any) -> int | None:
    if max_depth is None:
        return None
    if isinstance(max_depth, bool) or not isinstance(max_depth, (int, np.integer)) or max_depth < 1:
        raise ValueError(f"max_depth must be a positive int or None, got {max_depth!r}")
    return int(max_depth)


STRATEGIES: dict[str, type[Strategy]] = {
    "Router": Router,
    "ThresholdCascade": ThresholdCascade,
    "Cascade": Cascade,
    "CascadeRouter": CascadeRouter,
}


def load_policy(path: str | Path, quality_estimator: Any, cost_estimator: Any, *, models: Sequence[str] | None = None, expected: type[Strategy] | None = None) -> Strategy:
    """Read a policy JSON written by :meth:`Strategy.save`; see :meth:`Strategy.load`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p} is not a readable policy file: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != POLICY_FORMAT:
        raise ValueError(f"{p} is not a cascade-routing policy (missing format marker)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{p} has policy schema version {data.get('schema_version')!r}; this cascade-routing "
            f"reads version {SCHEMA_VERSION}. Refit and save the policy with this version."
        )
    try:
        cls = STRATEGIES[data["strategy"]]
        saved_models = [str(m) for m in data["models"]]
        order = [str(m) for m in data["order"]]
        settings = dict(data["settings"])
        lam = data["lambdas"]
        lam_e = data["lambdas_expensive"]
        gamma = float(data["gamma"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{p} is a corrupted policy file ({type(exc).__name__}: {exc})") from exc
    if expected is not None and cls is not expected:
        raise ValueError(f"{p} holds a {cls.__name__} policy, not a {expected.__name__}")
    if models is not None and list(models) != saved_models:
        raise ValueError(f"{p} was fitted for models {saved_models}, not {list(models)}")
    kwargs: dict[str, Any] = {
        "order": order,
        "rounding_digits": settings.get("rounding_digits", 8),
        "n_samples": settings.get("n_samples", 128),
        "sample_seed": settings.get("sample_seed", 0),
        "seed": settings.get("seed", 0),
    }
    bounds = settings.get("quality_bounds")
    if bounds is not None:
        try:
            kwargs["quality_bounds"] = (
                -math.inf if bounds[0] is None else bounds[0],
                math.inf if bounds[1] is None else bounds[1],
            )
        except (TypeError, IndexError, KeyError) as exc:
            raise ValueError(f"{p} is a corrupted policy file: quality_bounds {bounds!r}") from exc
    if cls is not Router:
        kwargs["max_depth"] = settings.get("max_depth")
    if cls is CascadeRouter:
        kwargs["force_order"] = settings.get("force_order", False)
        kwargs["prefixes_only"] = settings.get("prefixes_only", False)
    try:
        strat = cls(quality_estimator, cost_estimator, saved_models, **kwargs)
        strat.set_lambdas(lam, lambdas_expensive=lam_e, gamma=gamma)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p} is a corrupted policy file: {exc}") from exc
    strat.fit_info_ = dict(data.get("fit_info") or {})
    return strat


__all__ = [
    "AllModelsFailedError",
    "Cascade",
    "CascadeRouter",
    "ReplayResult",
    "Router",
    "RunResult",
    "Step",
    "Strategy",
    "ThresholdCascade",
    "load_policy",
    "query_coin",
]
