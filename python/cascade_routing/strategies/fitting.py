"""Fitting the multipliers λ and the coin γ to a budget (docs/algorithm.md §9).

- :func:`fit_multiplier_scale`: the smallest scale ``s`` of ``λ = s · shape`` whose replay
  meets the budget (bound doubling, then bisection), and the γ that mixes it with the next
  dearer policy to spend the budget exactly.
- :func:`fit_threshold_offset`: the same for the threshold cascade, whose offsets are
  additive on a finite range.
- :func:`search_per_step`: a black-box search for per-step multipliers around the constant
  solution (optuna's TPE if installed, else a seeded random search).
- :func:`fit_with_replayer`: the whole fit of one strategy by the replays of a
  :class:`~.replay.Replayer`; :func:`fit` calls it with an in-memory replayer,
  :func:`cascade_routing.distributed.fit_distributed` with one over Parquet partitions on a
  Dask cluster, so both fits are this one function.
- :func:`fit`: the in-memory fit of :meth:`Strategy.fit`.

Every mean the fit reads (a replay's mean cost and quality, the models' mean cost for
``order="cost"``) is correctly rounded (:mod:`cascade_routing._exact`), so it does not depend
on the order or the partitioning of the sum.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._exact import exact_column_means
from ..validation import check_choice, check_int, check_number, check_seed
from .replay import Replayer, ReplayMeans, make_replayer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .base import Queries, Strategy

log = logging.getLogger("cascade_routing.strategies")

#: Fit status values reported in ``fit_info_["status"]``.
FIT_OK = "ok"
FIT_BELOW_CHEAPEST = "budget_below_cheapest"
FIT_ABOVE_DEAREST = "budget_above_dearest"

#: ``evaluate(lambdas, prefer_expensive)``: one replay of the training queries.
Evaluate = Callable[[NDArray[np.float64], bool], ReplayMeans]


class ReplayFitOptions(TypedDict, total=False):
    """Options of the fit by replays, as the parameters of :meth:`Strategy.fit` of the same
    names: ``lambdas``, ``n_iter``, ``n_trials`` and ``progress``."""

    lambdas: str
    n_iter: int | None
    n_trials: int
    progress: Callable[[int, int], None] | None


class FitOptions(ReplayFitOptions, total=False):
    """:class:`ReplayFitOptions` plus ``seed`` and ``n_threads`` (see :meth:`Strategy.fit`)."""

    seed: int | None
    n_threads: int


class _Checked(NamedTuple):
    lambdas: str
    iters: int
    trials: int
    progress: Callable[[int, int], None] | None


def check_options(strategy: Strategy, options: ReplayFitOptions) -> _Checked:
    """The validated :class:`ReplayFitOptions` with their defaults (``iters`` from
    ``n_iter``, ``trials`` from ``n_trials``); TypeError naming an unknown keyword."""
    unknown = sorted(set(options) - ReplayFitOptions.__optional_keys__)
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {unknown}; the fit's options are "
            f"{sorted(FitOptions.__optional_keys__)} and budget"
        )
    lambdas = check_choice(options.get("lambdas", "constant"), "lambdas", ("constant", "per_step"))
    n_iter = options.get("n_iter")
    iters = strategy.default_iterations if n_iter is None else check_int(n_iter, "n_iter", 0)
    trials = check_int(options.get("n_trials", 200), "n_trials", 0)
    progress = options.get("progress")
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a callable progress(done, total) or None")
    return _Checked(lambdas, iters, trials, progress)


class ScaleFit(NamedTuple):
    """The cheap and expensive multipliers, the coin γ and the replays they gave."""

    lambdas: NDArray[np.float64]
    lambdas_expensive: NDArray[np.float64]
    gamma: float
    status: str
    cheap: ReplayMeans
    expensive: ReplayMeans


def with_tolerance(budget: float) -> float:
    """The budget plus the rounding error of a mean over queries (a cost equal to the budget
    but summed in another order must count as meeting it)."""
    return budget + 1e-12 * max(abs(budget), 1e-300)


def mixture(gamma: float, cheap: ReplayMeans, exp: ReplayMeans) -> tuple[float, float]:
    """Mean cost and quality of the γ-mixture of two policies."""
    return (
        (1 - gamma) * cheap.mean_cost + gamma * exp.mean_cost,
        (1 - gamma) * cheap.mean_quality + gamma * exp.mean_quality,
    )


def _gamma(budget: float, cheap: ReplayMeans, exp: ReplayMeans) -> float:
    c_a, c_b = cheap.mean_cost, exp.mean_cost
    return 0.0 if c_b <= c_a else float(np.clip((budget - c_a) / (c_b - c_a), 0.0, 1.0))


def fit_multiplier_scale(
    evaluate: Evaluate,
    shape: NDArray[np.float64],
    budget: float,
    iters: int,
    lo_s: float = 0.0,
    hi_s: float = float("inf"),
    initial: float = 1.0,
) -> ScaleFit:
    """Scale ``s`` with ``λ = s · shape``: the smallest that meets the budget, then γ."""
    budget_tol = with_tolerance(budget)
    dearest = evaluate(lo_s * shape, True)
    if dearest.mean_cost <= budget_tol:
        if dearest.mean_cost < 2 * budget - budget_tol:
            return ScaleFit(lo_s * shape, lo_s * shape, 1.0, FIT_ABOVE_DEAREST, dearest, dearest)
    hi = initial
    res_hi = evaluate(hi * shape, False)
    lo = lo_s
    grow = 0
    while res_hi.mean_cost > budget_tol:
        if hi >= hi_s or grow > 60:
            # Even the cheapest policy overspends.
            return ScaleFit(hi * shape, hi * shape, 0.0, FIT_BELOW_CHEAPEST, res_hi, res_hi)
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
    return ScaleFit(hi * shape, lo * shape, _gamma(budget, res_hi, res_lo), FIT_OK, res_hi, res_lo)


def fit_threshold_offset(
    evaluate: Evaluate, budget: float, iters: int, lo: float, hi: float
) -> ScaleFit:
    """One additive offset on ``[lo, hi]`` (threshold ``1 − λ``): bisect λ itself."""
    budget_tol = with_tolerance(budget)
    dearest = evaluate(np.array([lo]), True)
    if dearest.mean_cost <= budget_tol:
        status = FIT_ABOVE_DEAREST if dearest.mean_cost < 2 * budget - budget_tol else FIT_OK
        return ScaleFit(np.array([lo]), np.array([lo]), 1.0, status, dearest, dearest)
    res_hi = evaluate(np.array([hi]), False)
    if res_hi.mean_cost > budget_tol:
        return ScaleFit(np.array([hi]), np.array([hi]), 0.0, FIT_BELOW_CHEAPEST, res_hi, res_hi)
    for _ in range(max(iters, 40)):
        mid = 0.5 * (lo + hi)
        res = evaluate(np.array([mid]), False)
        if res.mean_cost <= budget_tol:
            hi, res_hi = mid, res
        else:
            lo = mid
    res_lo = evaluate(np.array([lo]), True)
    return ScaleFit(
        np.array([hi]), np.array([lo]), _gamma(budget, res_hi, res_lo), FIT_OK, res_hi, res_lo
    )


def search_per_step(
    evaluate: Evaluate,
    lam: NDArray[np.float64],
    budget: float,
    n_trials: int,
    seed: int,
    steps: int,
) -> NDArray[np.float64] | None:
    """Black-box search for per-step multipliers around the constant solution ``lam``.

    Returns the relative shape of the best per-step multipliers, or ``None`` if none beats
    the constant one.
    """
    base = max(float(lam[0]), 1e-12)
    budget_tol = with_tolerance(budget)

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
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
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


def cost_order(column_means: Sequence[float]) -> NDArray[np.int64]:
    """Models by ascending mean training cost (ties: the given order), as ``order="cost"``
    sets them (docs/algorithm.md §1); the means are :func:`exact_column_means`."""
    return np.argsort(np.asarray(column_means, dtype=np.float64), kind="stable").astype(np.int64)


def fit(
    strategy: Strategy,
    queries: Queries,
    answers: Sequence[Sequence[Any]],
    quality: ArrayLike,
    cost: ArrayLike,
    *,
    budget: Any,
    lambdas: str = "constant",
    n_iter: int | None = None,
    n_trials: int = 200,
    seed: int | None = None,
    n_threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Fit ``strategy`` in place on logged data in memory (see :meth:`Strategy.fit`)."""
    started = time.perf_counter()
    s = strategy
    q, c = s._validate_logged(queries, answers, quality, cost)
    budget = check_number(budget, "budget", 0.0)
    options = ReplayFitOptions(
        lambdas=lambdas, n_iter=n_iter, n_trials=n_trials, progress=progress
    )
    check_options(s, options)
    threads = check_int(n_threads, "n_threads", 0)
    if seed is not None:
        s.seed = check_seed(seed)
    if isinstance(s.order, str) and s.order == "cost":
        s.order_ = cost_order(exact_column_means(c))
    rep = make_replayer(s, queries, answers, q, c, threads)
    fit_with_replayer(s, rep, budget=budget, n_queries=len(queries), started=started, **options)


def fit_with_replayer(
    strategy: Strategy,
    replayer: Replayer,
    *,
    budget: Any,
    n_queries: int,
    started: float | None = None,
    extra_info: dict[str, Any] | None = None,
    **options: Unpack[ReplayFitOptions],
) -> None:
    """The fit of ``strategy`` by replays of ``replayer`` (docs/algorithm.md §9): bound
    doubling, bisection, the optional per-step search and γ. :func:`fit` calls it with an
    in-memory replayer, :func:`cascade_routing.distributed.fit_distributed` with one whose
    replays are a map over Parquet partitions; the fit reads only the replays' mean cost and
    mean quality.

    ``strategy.order_`` and ``strategy.seed`` must already be set; ``n_queries`` is recorded
    in ``fit_info_``, with ``extra_info`` merged in; ``options`` are :class:`ReplayFitOptions`.
    """
    t0 = time.perf_counter() if started is None else started
    s = strategy
    lambdas, iters, trials, progress = check_options(s, options)
    budget = check_number(budget, "budget", 0.0)
    total = iters + 45 + (trials if lambdas == "per_step" else 0)
    counter = {"replays": 0}

    def evaluate(lam: NDArray[np.float64], expensive: bool) -> ReplayMeans:
        res = replayer.replay(lam, expensive)
        counter["replays"] += 1
        if progress is not None:
            progress(min(counter["replays"], total), total)
        return res

    best = s.fit_scale(evaluate, np.ones(1), budget, iters, replayer)
    if lambdas == "per_step" and s.n_steps() > 1 and best.status == FIT_OK:
        shape = search_per_step(evaluate, best.lambdas, budget, trials, s.seed, s.n_steps())
        if shape is not None:
            alt = s.fit_scale(evaluate, shape, budget, iters, replayer)
            alt_quality = mixture(alt.gamma, alt.cheap, alt.expensive)[1]
            if alt_quality > mixture(best.gamma, best.cheap, best.expensive)[1] + 1e-12:
                best = alt
    s.lambdas_ = best.lambdas
    s.lambdas_expensive_ = best.lambdas_expensive
    s.gamma_ = best.gamma
    exp_cost, exp_quality = mixture(best.gamma, best.cheap, best.expensive)
    s.fit_info_ = {
        "budget": budget,
        "status": best.status,
        "expected_cost": exp_cost,
        "expected_quality": exp_quality,
        "cost_cheap": best.cheap.mean_cost,
        "cost_expensive": best.expensive.mean_cost,
        "lambdas": "per_step" if best.lambdas.size > 1 else "constant",
        "replays": counter["replays"],
        "replay_engine": replayer.engine,
        "seconds": time.perf_counter() - t0,
        "n_queries": n_queries,
        **(extra_info or {}),
    }
    if best.status != FIT_OK:
        # Reported in fit_info_; a debug line only (fits at many budgets hit this often).
        log.debug(
            "%s: budget %.6g is %s (achievable mean cost %.6g .. %.6g); using the nearest policy",
            type(s).__name__,
            budget,
            "below the cheapest" if best.status == FIT_BELOW_CHEAPEST else "above the dearest",
            best.cheap.mean_cost,
            best.expensive.mean_cost,
        )
    log.info("%s fitted: %s", type(s).__name__, s.fit_info_)


__all__ = [
    "FIT_ABOVE_DEAREST",
    "FIT_BELOW_CHEAPEST",
    "FIT_OK",
    "FitOptions",
    "ReplayFitOptions",
    "ScaleFit",
    "cost_order",
    "fit",
    "fit_with_replayer",
    "fit_multiplier_scale",
    "fit_threshold_offset",
    "mixture",
    "search_per_step",
    "with_tolerance",
]
