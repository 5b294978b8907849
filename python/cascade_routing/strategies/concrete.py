"""The four strategies of docs/algorithm.md §3.

Routing, the optimal cascade and cascade routing are one supermodel search with different
candidate families (their settings differ, their code does not). The threshold cascade
overrides what differs: its decision rule, its selection rule, its replay kind and
thresholds, and its fitting scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._reference import threshold_continues
from ..engine import DEFAULT_MAX_WORK, check_work
from ..estimators import QualityEstimate
from ..options import ReplayKind
from . import fitting
from .base import Plan, Strategy
from .replay import Replayer, expand_lambdas


class Router(Strategy):
    """Routing: pick the one model with the best ``q̂ − λ ĉ`` before any model runs (§3)."""

    kind: ClassVar[str] = "router"
    default_iterations: ClassVar[int] = 100

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
        max_work: int = DEFAULT_MAX_WORK,
    ) -> None:
        super().__init__(
            quality_estimator,
            cost_estimator,
            models,
            order=order,
            max_depth=1,
            force_order=False,
            rounding_digits=rounding_digits,
            n_samples=n_samples,
            sample_seed=sample_seed,
            seed=seed,
            quality_bounds=quality_bounds,
            max_work=max_work,
        )


class Cascade(Strategy):
    """The paper's optimal cascade: run models in order; stop at the best prefix (§3)."""

    kind: ClassVar[str] = "cascade"

    def __init__(
        self,
        quality_estimator: Any,
        cost_estimator: Any,
        models: Sequence[str],
        *,
        order: str | Sequence[str] = "cost",
        max_depth: int | None = None,
        rounding_digits: int | None = 8,
        n_samples: int = 128,
        sample_seed: int = 0,
        seed: int = 0,
        quality_bounds: tuple[float, float] | None = None,
        max_work: int = DEFAULT_MAX_WORK,
    ) -> None:
        super().__init__(
            quality_estimator,
            cost_estimator,
            models,
            order=order,
            max_depth=max_depth,
            force_order=True,
            prefixes_only=True,
            rounding_digits=rounding_digits,
            n_samples=n_samples,
            sample_seed=sample_seed,
            seed=seed,
            quality_bounds=quality_bounds,
            max_work=max_work,
        )


class CascadeRouter(Strategy):
    """Cascade routing: at every step the best supermodel of models still worth running (§3)."""

    kind: ClassVar[str] = "cascade_router"

    def __init__(
        self,
        quality_estimator: Any,
        cost_estimator: Any,
        models: Sequence[str],
        *,
        order: str | Sequence[str] = "cost",
        max_depth: int | None = None,
        force_order: bool = False,
        prefixes_only: bool = False,
        rounding_digits: int | None = 8,
        n_samples: int = 128,
        sample_seed: int = 0,
        seed: int = 0,
        quality_bounds: tuple[float, float] | None = None,
        max_work: int = DEFAULT_MAX_WORK,
    ) -> None:
        super().__init__(
            quality_estimator,
            cost_estimator,
            models,
            order=order,
            max_depth=max_depth,
            force_order=force_order,
            prefixes_only=prefixes_only,
            rounding_digits=rounding_digits,
            n_samples=n_samples,
            sample_seed=sample_seed,
            seed=seed,
            quality_bounds=quality_bounds,
            max_work=max_work,
        )


class ThresholdCascade(Strategy):
    """The classic cascade: after model ``j`` continue iff its post-hoc ``q̂_j < 1 − λ_j`` (§3).

    The answer is the last model run. ``λ`` may be negative here (a threshold above 1).
    The rule is :func:`cascade_routing._reference.threshold_continues`, shared with the
    compiled replay.
    """

    kind: ClassVar[str] = "threshold_cascade"
    replay_kind: ClassVar[ReplayKind] = ReplayKind.THRESHOLD_CASCADE
    negative_lambdas: ClassVar[bool] = True
    uses_decider: ClassVar[bool] = False

    def __init__(
        self,
        quality_estimator: Any,
        cost_estimator: Any,
        models: Sequence[str],
        *,
        order: str | Sequence[str] = "cost",
        max_depth: int | None = None,
        rounding_digits: int | None = 8,
        n_samples: int = 128,
        sample_seed: int = 0,
        seed: int = 0,
        quality_bounds: tuple[float, float] | None = None,
        max_work: int = DEFAULT_MAX_WORK,
    ) -> None:
        super().__init__(
            quality_estimator,
            cost_estimator,
            models,
            order=order,
            max_depth=max_depth,
            force_order=True,
            rounding_digits=rounding_digits,
            n_samples=n_samples,
            sample_seed=sample_seed,
            seed=seed,
            quality_bounds=quality_bounds,
            max_work=max_work,
        )

    def _check_work(self, max_work: Any) -> int:
        # No search: each decision compares one estimate with one threshold.
        return check_work(len(self.models), 0, 1, 1, max_work)

    def n_steps(self) -> int:
        return max(self._depth(len(self.models)) - 1, 1)

    # ------------------------------------------------------------------ one decision

    def _plan(
        self,
        query: Any,
        ran: NDArray[np.bool_],
        est: QualityEstimate,
        cst: NDArray[np.float64],
        exclude: frozenset[int],
        lams: tuple[NDArray[np.float64], NDArray[np.float64]],
    ) -> Plan:
        k = len(self.models)
        perm = self.order_
        keep, j, lam_steps, _ = self._step(query, ran, exclude, lams)
        # The threshold after model m_{j-1} is 1 - λ_{j-1}.
        lam = float(lam_steps[min(max(j - 1, 0), lam_steps.shape[0] - 1)])
        run = [int(perm[i]) for i in np.flatnonzero(ran)]
        depth = self._depth(k)
        if j >= depth:
            return self._make_plan(-1, run, float("nan"), lam, 0.0)
        if j > 0:
            last = int(np.flatnonzero(ran)[-1])
            after = float(est.mean[0, last])
            if not threshold_continues(after, 1.0 - lam, j, depth):  # type: ignore[no-untyped-call]
                return self._make_plan(-1, run, float("nan"), lam, 0.0)
        nxt = next((i for i in range(k) if not ran[i] and (keep is None or keep[i])), -1)
        if nxt < 0:
            return self._make_plan(-1, run, float("nan"), lam, 0.0)
        members = [*run, int(perm[nxt])]
        return self._make_plan(int(perm[nxt]), members, float("nan"), lam, float(cst[0, nxt]))

    # ------------------------------------------------------------------ selection

    def _select_index(self, post_mean: NDArray[np.float64], ran: NDArray[np.bool_]) -> int:
        """The last model run: the latest in the model order that has answered."""
        idx = np.flatnonzero(ran)
        return int(idx[-1]) if idx.size else -1

    def select(self, query: Any, answers: Sequence[Any]) -> str | None:
        """The last model run (the latest in the model order that has answered)."""
        ran = self._check_state(answers)
        return self._select_from(ran, np.zeros(len(self.models)))

    @property
    def select_last(self) -> bool:
        return True

    # ------------------------------------------------------------------ replay and fitting

    def replay_arguments(
        self, lambdas: NDArray[np.float64], k: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lam = np.ascontiguousarray(lambdas, dtype=np.float64)
        return np.zeros(1), np.ascontiguousarray(1.0 - expand_lambdas(lam, k))

    def replay_step(
        self,
        j: int,
        est: QualityEstimate,
        cst: NDArray[np.float64],
        ran: NDArray[np.bool_],
        lam_steps: NDArray[np.float64],
        prefer_expensive: bool,
        n_threads: int,
    ) -> NDArray[np.int64]:
        n = est.mean.shape[0]
        if j == 0:
            return np.zeros(n, dtype=np.int64)
        depth = self._depth(est.mean.shape[1])
        threshold = 1.0 - float(lam_steps[j - 1])
        # After model j-1 (its post-hoc estimate), row by row: the one shared rule.
        after = est.mean[:, j - 1].tolist()

        def go(q: float) -> bool:
            return bool(threshold_continues(q, threshold, j, depth))  # type: ignore[no-untyped-call]

        return np.array([j if go(q) else -1 for q in after], dtype=np.int64)

    def fit_scale(
        self,
        evaluate: fitting.Evaluate,
        shape: NDArray[np.float64],
        budget: float,
        iters: int,
        rep: Replayer,
    ) -> fitting.ScaleFit:
        # Thresholds are additive, not multiplicative: bisect λ itself on its finite range.
        # λ below 1 − max q̂ always continues, above 1 − min q̂ never does.
        lo_q, hi_q = rep.post_hoc_range()
        return fitting.fit_threshold_offset(
            evaluate, budget, iters, 1.0 - hi_q - 1.0, 1.0 - lo_q + 1.0
        )


__all__ = ["Cascade", "CascadeRouter", "Router", "ThresholdCascade"]
