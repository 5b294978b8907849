"""Replaying a strategy on logged data, for many multipliers (docs/algorithm.md §8).

One protocol, :class:`Replayer`, with two engines named after what they replay:

- :class:`TableReplayer`: two-phase table estimators; the whole replay runs in the active
  backend's compiled kernel (GIL released).
- :class:`EstimatorReplayer`: any estimators; a step-synchronous replay with one batched
  search per step. Estimates depend on the run-set, not on λ, so they are cached per
  (run-set, query) across every λ tried, and only for the queries that reach that run-set.

:func:`replay_python` is the slow check of both: one :meth:`Strategy.plan` per query and step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .. import _backend
from .._exact import exact_mean
from ..engine import standard_normals
from ..estimators import ConstantCost, QualityEstimate, TwoPhaseCost, TwoPhaseQuality
from ..validation import check_rows

if TYPE_CHECKING:
    from .base import Queries, Strategy


@dataclass(frozen=True)
class ReplayResult:
    """Per-query outcome of a strategy replayed on logged data (model indices as given)."""

    selected: NDArray[np.int64]
    n_run: NDArray[np.int64]
    order: NDArray[np.int64]
    cost: NDArray[np.float64]
    quality: NDArray[np.float64]

    @cached_property
    def mean_cost(self) -> float:
        """The correctly rounded mean cost (docs/algorithm.md §9; 0 if there are no queries)."""
        return exact_mean(self.cost)

    @cached_property
    def mean_quality(self) -> float:
        """The correctly rounded mean quality (0 if there are no queries)."""
        return exact_mean(self.quality)


class ReplayMeans(Protocol):
    """What fitting reads of a replay: a :class:`ReplayResult`, or the exact sums a replay on
    a Dask cluster returns (:class:`cascade_routing.distributed.ReplaySums`)."""

    @property
    def mean_cost(self) -> float: ...

    @property
    def mean_quality(self) -> float: ...


class Replayer(Protocol):
    """Replays one strategy over the same logged queries for many multipliers."""

    #: Name reported in ``fit_info_["replay_engine"]``.
    engine: str

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> ReplayMeans:
        """The outcome with multipliers ``lambdas`` (one per step; the last is reused)."""
        ...

    def post_hoc_range(self) -> tuple[float, float]:
        """Smallest and largest post-hoc quality estimate over the queries and models."""
        ...


def expand_lambdas(lambdas: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """One multiplier per step ``0..k-1``; the last given is reused for later steps."""
    lam = np.asarray(lambdas, dtype=np.float64)
    out = np.empty(k)
    for j in range(k):
        out[j] = lam[min(j, lam.shape[0] - 1)]
    return out


def to_given_order(
    perm: NDArray[np.int64],
    selected: NDArray[np.int64],
    n_run: NDArray[np.int64],
    order: NDArray[np.int64],
    cost: NDArray[np.float64],
    quality: NDArray[np.float64],
) -> ReplayResult:
    """A :class:`ReplayResult` with internal model positions mapped back to the given order."""
    sel = np.where(selected >= 0, perm[np.maximum(selected, 0)], -1)
    ordr = np.where(order >= 0, perm[np.maximum(order, 0)], -1)
    return ReplayResult(
        sel.astype(np.int64),
        n_run.astype(np.int64),
        ordr.astype(np.int64),
        cost.astype(np.float64),
        quality.astype(np.float64),
    )


class TableReplayer:
    """Replays two-phase table estimators entirely in the active backend's kernel."""

    engine = "compiled"

    def __init__(
        self,
        strategy: Strategy,
        rows: NDArray[np.int64],
        quality: NDArray[np.float64],
        cost: NDArray[np.float64],
        n_threads: int,
    ) -> None:
        qe = strategy.quality_estimator
        ce = strategy.cost_estimator
        perm = strategy.order_
        n = rows.shape[0]
        k = perm.shape[0]

        all_rows = n == 0 or (
            rows[0] == 0 and rows[-1] == n - 1 and bool(np.all(rows[1:] > rows[:-1]))
        )
        identity = bool(np.array_equal(perm, np.arange(k)))

        def take(table: NDArray[np.float64]) -> NDArray[np.float64]:
            # One copy at most; none when the rows are all rows in order and the model
            # order is the given one (a contiguous float64 table is used as it is).
            if all_rows and table.shape[0] == n:
                t = table if identity else table[:, perm]
            else:
                t = table[rows] if identity else table[np.ix_(rows, perm)]
            return np.ascontiguousarray(t, dtype=np.float64)

        use_sd = qe.ante_var is not None and qe.post_var is not None
        if use_sd:
            ante_sd, post_sd = np.sqrt(take(qe.ante_var)), np.sqrt(take(qe.post_var))
        else:
            ante_sd = post_sd = np.zeros((n, 0))
        if isinstance(ce, ConstantCost):
            ante_c = post_c = np.ascontiguousarray(np.tile(ce.costs[perm], (n, 1)))
        else:
            ante_c, post_c = take(ce.ante), take(ce.post)
        self.tables = _backend.ReplayTables(
            ante_quality=take(qe.ante_mean),
            post_quality=take(qe.post_mean),
            ante_sd=ante_sd,
            post_sd=post_sd,
            ante_cost=ante_c,
            post_cost=post_c,
            true_quality=np.ascontiguousarray(quality if identity else quality[:, perm]),
            true_cost=np.ascontiguousarray(cost if identity else cost[:, perm]),
            use_sd=use_sd,
        )
        self.strategy = strategy
        self.n_threads = n_threads
        self.normals = (
            standard_normals(k, strategy.n_samples, strategy.sample_seed)
            if use_sd
            else np.zeros((0, k))
        )

    def post_hoc_range(self) -> tuple[float, float]:
        post = self.tables.post_quality
        return float(post.min()), float(post.max())

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> TableReplay:
        s = self.strategy
        n, k = self.tables.ante_quality.shape
        search_lam, thresholds = s.replay_arguments(lambdas, k)
        sel, n_run, order, cst, qual = _backend.active().run_replay(
            self.tables,
            search_lam,
            np.full(n, 1 if prefer_expensive else 0, dtype=np.uint8),
            self.normals,
            s.replay_kind,
            thresholds,
            s.options_,
            s.select_last,
            self.n_threads,
        )
        return TableReplay(
            s.order_,
            np.asarray(sel),
            np.asarray(n_run),
            np.asarray(order),
            np.asarray(cst),
            np.asarray(qual),
        )


class TableReplay:
    """A replay by :class:`TableReplayer`: its means at once, the per-query
    :class:`ReplayResult` (model positions mapped back to the given order) on demand. A fit
    reads only the means, so a replay of a million queries maps no model index."""

    def __init__(
        self,
        perm: NDArray[np.int64],
        selected: NDArray[np.int64],
        n_run: NDArray[np.int64],
        order: NDArray[np.int64],
        cost: NDArray[np.float64],
        quality: NDArray[np.float64],
    ) -> None:
        self._parts = (perm, selected, n_run, order, cost, quality)

    @cached_property
    def mean_cost(self) -> float:
        """The correctly rounded mean cost (as :attr:`ReplayResult.mean_cost`)."""
        return exact_mean(self._parts[4])

    @cached_property
    def mean_quality(self) -> float:
        """The correctly rounded mean quality (as :attr:`ReplayResult.mean_quality`)."""
        return exact_mean(self._parts[5])

    def result(self) -> ReplayResult:
        """The per-query outcome in the given model order."""
        return to_given_order(*self._parts)


def _result(res: ReplayResult | TableReplay) -> ReplayResult:
    return res.result() if isinstance(res, TableReplay) else res


class _RunSetEstimates:
    """Estimates of one run-set, for the queries that have reached it only.

    ``rows`` is sorted; row ``rows[i]`` has its estimates at position ``i``. Memory grows
    with the queries that reach the run-set, not with all queries.
    """

    __slots__ = ("rows", "mean", "cost", "var", "cov")

    def __init__(self, k: int) -> None:
        self.rows = np.zeros(0, dtype=np.int64)
        self.mean = np.zeros((0, k))
        self.cost = np.zeros((0, k))
        self.var: NDArray[np.float64] | None = None
        self.cov: NDArray[np.float64] | None = None

    def missing(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """The rows of ``rows`` (sorted, unique) without an estimate yet."""
        return rows[~np.isin(rows, self.rows, assume_unique=True)]

    def add(
        self, rows: NDArray[np.int64], est: QualityEstimate, cost: NDArray[np.float64]
    ) -> None:
        """Store the estimates of new ``rows`` (none of them stored yet)."""
        all_rows = np.concatenate([self.rows, rows])
        order = np.argsort(all_rows, kind="stable")
        self.rows = all_rows[order]
        self.mean = np.concatenate([self.mean, est.mean])[order]
        self.cost = np.concatenate([self.cost, cost])[order]
        if est.var is not None:
            old = self.var if self.var is not None else np.zeros((0, est.var.shape[1]))
            self.var = np.concatenate([old, est.var])[order]
        if est.cov is not None:
            k = est.cov.shape[1]
            old = self.cov if self.cov is not None else np.zeros((0, k, k))
            self.cov = np.concatenate([old, est.cov])[order]

    def take(self, rows: NDArray[np.int64]) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """Estimates of ``rows`` (all stored)."""
        pos = np.searchsorted(self.rows, rows)
        var = None if self.var is None else self.var[pos]
        cov = None if self.cov is None else self.cov[pos]
        return QualityEstimate(self.mean[pos], var, cov), self.cost[pos]


class EstimatorReplayer:
    """Replays any estimators: step-synchronous, one batched search per step.

    Each step calls the estimators once per run-set, for the queries that reach it and have
    no estimate yet; what is stored per run-set is only those queries' estimates.
    """

    engine = "cached"

    def __init__(
        self,
        strategy: Strategy,
        queries: Queries,
        answers: Sequence[Sequence[Any]],
        quality: NDArray[np.float64],
        cost: NDArray[np.float64],
        n_threads: int,
    ) -> None:
        self.strategy = strategy
        self.queries = list(queries)
        self.answers = [list(row) for row in answers]
        self.true_q = np.ascontiguousarray(quality[:, strategy.order_])
        self.true_c = np.ascontiguousarray(cost[:, strategy.order_])
        self.n_threads = n_threads
        self._cache: dict[bytes, _RunSetEstimates] = {}

    def estimates(
        self, ran_internal: NDArray[np.bool_], rows: NDArray[np.int64]
    ) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """Estimates given the run-set ``ran_internal`` for ``rows`` (sorted, unique)."""
        k = self.true_q.shape[1]
        entry = self._cache.setdefault(ran_internal.tobytes(), _RunSetEstimates(k))
        missing = entry.missing(rows)
        if missing.size:
            s = self.strategy
            ran_given = np.zeros_like(ran_internal)
            ran_given[s.order_] = ran_internal
            partial = [
                [a if ran_given[j] else None for j, a in enumerate(self.answers[r])]
                for r in missing
            ]
            est, cst = s._estimate([self.queries[r] for r in missing], partial)
            entry.add(missing, est, cst)
        return entry.take(rows)

    def post_hoc_range(self) -> tuple[float, float]:
        k = self.true_q.shape[1]
        every = np.arange(self.true_q.shape[0], dtype=np.int64)
        post = self.estimates(np.ones(k, dtype=bool), every)[0].mean
        return float(post.min()), float(post.max())

    def _gather(
        self, ran: NDArray[np.bool_], idx: NDArray[np.int64]
    ) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """Estimates of the rows ``idx`` (sorted), each given its own run-set."""
        k = self.true_q.shape[1]
        groups: dict[bytes, list[int]] = {}
        for pos, row in enumerate(idx):
            groups.setdefault(ran[row].tobytes(), []).append(pos)
        mean = np.empty((idx.size, k))
        cst = np.empty((idx.size, k))
        var = cov = None
        for positions in groups.values():
            rows = idx[positions]
            est, c = self.estimates(ran[rows[0]].copy(), rows)
            mean[positions] = est.mean
            cst[positions] = c
            if est.var is not None:
                if var is None:
                    var = np.empty((idx.size, k))
                var[positions] = est.var
            if est.cov is not None:
                if cov is None:
                    cov = np.empty((idx.size, k, k))
                cov[positions] = est.cov
        return QualityEstimate(mean, var, cov), cst

    def replay(self, lambdas: NDArray[np.float64], prefer_expensive: bool) -> ReplayResult:
        s = self.strategy
        n, k = self.true_q.shape
        ran = np.zeros((n, k), dtype=bool)
        order = np.full((n, k), -1, dtype=np.int64)
        n_run = np.zeros(n, dtype=np.int64)
        total_cost = np.zeros(n)
        active = np.ones(n, dtype=bool)
        lam_steps = expand_lambdas(lambdas, k)
        for j in range(k):
            idx = np.flatnonzero(active)
            if idx.size == 0:
                break
            est, cst = self._gather(ran, idx)
            nm = s.replay_step(j, est, cst, ran[idx], lam_steps, prefer_expensive, self.n_threads)
            stop = nm < 0
            active[idx[stop]] = False
            go = idx[~stop]
            chosen = nm[~stop]
            ran[go, chosen] = True
            order[go, j] = chosen
            n_run[go] += 1
            total_cost[go] += self.true_c[go, chosen]
        # Post-hoc estimates given each query's final run-set, for the selection.
        post_q = self._gather(ran, np.arange(n, dtype=np.int64))[0].mean
        selected = np.full(n, -1, dtype=np.int64)
        quality = np.zeros(n)
        for r in range(n):
            if n_run[r] == 0:
                continue
            sel = s._select_index(post_q[r], ran[r])
            selected[r] = sel
            quality[r] = self.true_q[r, sel]
        return to_given_order(s.order_, selected, n_run, order, total_cost, quality)


def make_replayer(
    strategy: Strategy,
    queries: Queries,
    answers: Sequence[Sequence[Any]],
    quality: NDArray[np.float64],
    cost: NDArray[np.float64],
    n_threads: int,
) -> TableReplayer | EstimatorReplayer:
    """The fastest replayer for the strategy's estimators: tables if they are tables."""
    qe, ce = strategy.quality_estimator, strategy.cost_estimator
    k = len(strategy.models)
    rows = np.asarray(queries)
    table_queries = rows.ndim == 1 and (rows.size == 0 or np.issubdtype(rows.dtype, np.integer))
    if (
        table_queries
        and type(qe) is TwoPhaseQuality
        and isinstance(ce, (TwoPhaseCost, ConstantCost))
        and qe.n_models == k
        and ce.n_models == k
    ):
        n_rows = qe.ante_mean.shape[0]
        if isinstance(ce, TwoPhaseCost):
            n_rows = min(n_rows, ce.ante.shape[0])
        idx = check_rows(rows, n_rows, "queries (row indices into the estimators' tables)")
        return TableReplayer(strategy, idx, quality, cost, n_threads)
    return EstimatorReplayer(strategy, queries, answers, quality, cost, n_threads)


def replay_python(
    strategy: Strategy,
    queries: Queries,
    answers: Sequence[Sequence[Any]],
    quality: NDArray[np.float64],
    cost: NDArray[np.float64],
) -> ReplayResult:
    """The replay by one :meth:`Strategy.plan` per query and step (slow; the oracle)."""
    n, k = quality.shape
    selected = np.full(n, -1, dtype=np.int64)
    n_run = np.zeros(n, dtype=np.int64)
    order = np.full((n, k), -1, dtype=np.int64)
    total = np.zeros(n)
    qual = np.zeros(n)
    for r, (query, full) in enumerate(zip(queries, answers)):
        seen: list[Any] = [None] * k
        for j in range(k):
            nm = strategy.plan(query, seen).index
            if nm < 0:
                break
            seen[nm] = full[nm]
            order[r, j] = nm
            n_run[r] += 1
            total[r] += cost[r, nm]
        if n_run[r]:
            name = strategy.select(query, seen)
            assert name is not None
            sel = strategy.models.index(name)
            selected[r] = sel
            qual[r] = quality[r, sel]
    return ReplayResult(selected, n_run, order, total, qual)


def replay_strategy(
    strategy: Strategy,
    queries: Queries,
    answers: Sequence[Sequence[Any]],
    quality: NDArray[np.float64],
    cost: NDArray[np.float64],
    engine: str,
    n_threads: int,
) -> ReplayResult:
    """:meth:`Strategy.replay` on validated tables: each query's γ coin picks its policy."""
    from .base import query_coin

    lam_cheap, lam_exp = strategy._check_fitted()
    if engine == "python":
        return replay_python(strategy, queries, answers, quality, cost)
    coins = np.array([query_coin(x, strategy.seed) < strategy.gamma_ for x in queries], dtype=bool)
    rep = make_replayer(strategy, queries, answers, quality, cost, n_threads)
    cheap = _result(rep.replay(lam_cheap, False))
    if not coins.any():
        return cheap
    exp = _result(rep.replay(lam_exp, True))
    return ReplayResult(
        np.where(coins, exp.selected, cheap.selected),
        np.where(coins, exp.n_run, cheap.n_run),
        np.where(coins[:, None], exp.order, cheap.order),
        np.where(coins, exp.cost, cheap.cost),
        np.where(coins, exp.quality, cheap.quality),
    )


__all__ = [
    "EstimatorReplayer",
    "ReplayResult",
    "ReplayMeans",
    "Replayer",
    "TableReplay",
    "TableReplayer",
    "expand_lambdas",
    "make_replayer",
    "replay_python",
]
