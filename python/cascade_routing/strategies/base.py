"""The shared machinery of every strategy: parameters, estimation, one decision, selection.

A strategy decides, for one query and the answers so far, which model to run next
(:meth:`Strategy.plan`) and which answer to return (:meth:`Strategy.select`). Fitting
(:mod:`.fitting`), replaying logged data (:mod:`.replay`), the decision loop against real
models (:mod:`.loop`) and the policy file (:mod:`.persistence`) each live in their own module;
the methods here only delegate to them. Subclasses (:mod:`.concrete`) override what differs:
their decision rule, their selection rule, their replay kind and their fitting scale.
See docs/algorithm.md §3.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _backend
from .._reference import select_best
from ..engine import DEFAULT_MAX_WORK, check_work, search_options, standard_normals
from ..estimators import QualityEstimate, as_cost_estimate, as_quality_estimate
from ..options import ReplayKind, SearchOptions, UncertaintyMode
from ..validation import (
    check_answers,
    check_bool,
    check_bounds,
    check_choice,
    check_depth,
    check_model_names,
    check_n_samples,
    check_number,
    check_psd,
    check_rounding_digits,
    check_seed,
    float_array,
    model_index,
)
from . import fitting, loop, persistence, replay
from .decider import (
    Decider,
    RunSetTable,
    build_table,
    has_runset_uncertainty,
    mask_bits,
    mask_of,
    predict_means,
    runset_factor,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from .loop import RunResult
    from .replay import Replayer, ReplayResult

#: Held while a strategy builds its prepared decider (once per policy).
_DECIDER_LOCK = threading.Lock()

#: Queries: any sequence, or a NumPy array (row indices for table-backed estimators).
Queries = Union[Sequence[Any], NDArray[Any]]  # noqa: UP007 (a runtime alias)

_NO_SD = np.zeros(0)
_NO_CHOL = np.zeros((0, 0))


def query_coin(query: Any, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the query and the seed (the γ coin, §2)."""
    if isinstance(query, np.generic):
        query = query.item()  # np.int64(3) and 3 are the same query
    digest = hashlib.blake2b(f"{seed}\x1f{query!r}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


@dataclass(frozen=True)
class Plan:
    """One decision: the model to run next (or a stop) and why.

    Attributes
    ----------
    index : int
        Position of the next model in ``models`` (the given order); -1 to stop.
    model : str or None
        Name of the next model; ``None`` to stop.
    supermodel : tuple of str
        The best supermodel (run models included), by name in the given order.
    members : tuple of int
        The same supermodel as positions in ``models``.
    utility : float
        Its utility ``Q − λ·C`` (NaN for the threshold cascade, which does not search).
    lam : float
        The multiplier (threshold cascade: threshold offset) of this step.
    estimated_cost : float
        Estimated cost of the next model (0 for a stop).
    """

    index: int
    model: str | None
    supermodel: tuple[str, ...]
    members: tuple[int, ...]
    utility: float
    lam: float
    estimated_cost: float

    @property
    def stop(self) -> bool:
        """Whether the strategy stops here."""
        return self.index < 0


class Strategy:
    """Shared machinery of the four strategies.

    Parameters
    ----------
    quality_estimator, cost_estimator
        Objects with ``predict(queries, answers)`` (see docs/estimators.md).
    models : sequence of str
        Model names, in the column order the estimators use (at most 64).
    order : {"cost", "given"} or sequence of str
        The model order (for cascades and ``force_order``): ascending mean training cost
        (set by ``fit``), the given order, or an explicit list of names.
    max_depth : int or None
        Largest supermodel size, run models included (``None``: no limit).
    force_order : bool
        New models must come after every run model in the model order.
    prefixes_only : bool
        Only prefixes of the model order are candidates (implies ``force_order``).
    rounding_digits : int or None
        Utilities are rounded to this many decimals before comparing (ties: the γ coin).
    n_samples, sample_seed : int
        Sobol samples for expected maxima under uncertainty.
    seed : int
        Seed of the per-query γ coin.
    quality_bounds : (float, float), optional
        Clip quality samples to these bounds when computing expected maxima (e.g. ``(0, 1)``
        for probabilities of a correct answer); see :func:`cascade_routing.search_supermodel`.
    max_work : int
        Cap on the worst-case work of one decision, supermodels times samples (see
        :func:`cascade_routing.search_work` and docs/algorithm.md §11). Checked here, at
        construction: a strategy whose decisions could exceed it raises ``ValueError`` naming
        ``max_depth``.

    The settings saved with a policy are the keyword-only parameters of the class's
    constructor (except ``order``, saved on its own); see :meth:`setting_names`.
    """

    kind: ClassVar[str] = "strategy"
    #: What the compiled replay runs for this strategy.
    replay_kind: ClassVar[ReplayKind] = ReplayKind.SUPERMODEL_SEARCH
    #: Whether multipliers may be negative (threshold offsets may).
    negative_lambdas: ClassVar[bool] = False
    #: Bisection steps of ``fit`` unless ``n_iter`` is given.
    default_iterations: ClassVar[int] = 30
    #: Whether decisions are supermodel searches that a prepared :class:`Decider` can make.
    uses_decider: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        persistence.register(cls)

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
        if not callable(getattr(quality_estimator, "predict", None)):
            raise TypeError("quality_estimator must have a predict(queries, answers) method")
        if not callable(getattr(cost_estimator, "predict", None)):
            raise TypeError("cost_estimator must have a predict(queries, answers) method")
        self.quality_estimator = quality_estimator
        self.cost_estimator = cost_estimator
        self.models = check_model_names(models)
        self._index = {m: i for i, m in enumerate(self.models)}
        k = len(self.models)
        if isinstance(order, str):
            check_choice(order, "order", ("cost", "given"))
            self.order: str | tuple[str, ...] = order
            self.order_ = np.arange(k, dtype=np.int64)
        else:
            self.order = tuple(order) if isinstance(order, Iterable) else order
            self.order_ = self._order_from_names(order)
        prefixes = check_bool(prefixes_only, "prefixes_only")
        self.max_depth = check_depth(max_depth)
        self.force_order = check_bool(force_order, "force_order") or prefixes
        self.prefixes_only = prefixes
        self.rounding_digits = check_rounding_digits(rounding_digits)
        self.n_samples = check_n_samples(n_samples)
        self.sample_seed = check_seed(sample_seed, "sample_seed")
        self.seed = check_seed(seed)
        self.bounds_ = check_bounds(quality_bounds)
        self.quality_bounds = None if quality_bounds is None else self.bounds_
        self.max_work = self._check_work(max_work)
        #: The options of every search this strategy makes, built once.
        self.options_: SearchOptions = search_options(
            k,
            0,
            max_depth=self.max_depth,
            force_order=self.force_order,
            prefixes_only=self.prefixes_only,
            prune=True,
            rounding_digits=self.rounding_digits,
            quality_bounds=self.quality_bounds,
        )
        self.lambdas_: NDArray[np.float64] | None = None
        self.lambdas_expensive_: NDArray[np.float64] | None = None
        self.gamma_: float = 0.0
        self.fit_info_: dict[str, Any] = {}
        #: Factors per run-set for the prepared decider (:meth:`prepare`; saved with the policy).
        self.runset_table_: RunSetTable | None = None
        #: The quality estimator ``runset_table_`` belongs to (another one is re-prepared).
        self._table_source: Any = None
        self._decider: Decider | None = None
        self._decider_key: tuple[Any, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        # The decider holds compiled state and a lock: rebuilt on first use after unpickling.
        state = self.__dict__.copy()
        state["_decider"], state["_decider_key"] = None, ()
        return state

    # ------------------------------------------------------------------ settings

    def _check_work(self, max_work: Any) -> int:
        """Refuse a strategy whose worst decision could exceed ``max_work`` (§11)."""
        return check_work(
            len(self.models), 0, self.max_depth, self.n_samples, max_work, self.prefixes_only
        )

    def _order_from_names(self, names: Any) -> NDArray[np.int64]:
        if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
            raise TypeError("order must be 'cost', 'given' or a sequence of model names")
        listed = list(names)
        idx = [model_index(self._index, m, "model in order") for m in listed]
        if len(idx) != len(self.models) or len(set(idx)) != len(idx):
            raise ValueError(
                f"order must list every model exactly once; got {listed}, models "
                f"{list(self.models)}"
            )
        return np.array(idx, dtype=np.int64)

    def _depth(self, k: int) -> int:
        return k if self.max_depth is None else min(self.max_depth, k)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """Names of the settings saved with a policy: the constructor's keyword-only
        parameters, ``order`` excepted (it is saved on its own)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "order")

    def settings(self) -> dict[str, Any]:
        """Constructor settings saved with the policy (JSON-ready)."""
        out = {name: getattr(self, name) for name in self.setting_names()}
        if out.get("quality_bounds") is not None:
            # JSON has no infinity: an unbounded side is null.
            out["quality_bounds"] = [b if math.isfinite(b) else None for b in self.bounds_]
        return out

    @property
    def model_order(self) -> tuple[str, ...]:
        """Model names in the order the strategy considers them."""
        return tuple(self.models[i] for i in self.order_)

    def n_steps(self) -> int:
        """Number of decisions with their own multiplier (the length of per-step λ)."""
        return self._depth(len(self.models))

    def _check_fitted(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self.lambdas_ is None:
            raise RuntimeError(
                f"{type(self).__name__} has no multipliers yet; call fit(...) or set_lambdas(...)"
            )
        alt = self.lambdas_ if self.lambdas_expensive_ is None else self.lambdas_expensive_
        return self.lambdas_, alt

    def _check_lambdas(self, value: Any, name: str) -> NDArray[np.float64]:
        lam = float_array(value, name, (0, 1), layout="one multiplier, or one per step")
        lam = np.atleast_1d(lam).copy()
        steps = self.n_steps()
        if not 1 <= lam.size <= steps:
            raise ValueError(
                f"{name} must hold 1 to {steps} multipliers (one per step of "
                f"{type(self).__name__}), got {lam.size}"
            )
        if not self.negative_lambdas and np.any(lam < 0):
            raise ValueError(f"{name} must be non-negative")
        return lam

    def set_lambdas(
        self,
        lambdas: float | Sequence[float],
        *,
        lambdas_expensive: float | Sequence[float] | None = None,
        gamma: float = 0.0,
    ) -> Strategy:
        """Use the given multipliers instead of fitting them (one value or one per step).

        ``lambdas_expensive`` (default: ``lambdas``) must have the same length; ``gamma`` is
        in ``[0, 1]``. The same checks apply as when a policy file is loaded.
        """
        lam = self._check_lambdas(lambdas, "lambdas")
        alt = None
        if lambdas_expensive is not None:
            alt = self._check_lambdas(lambdas_expensive, "lambdas_expensive")
            if alt.size != lam.size:
                raise ValueError(
                    f"lambdas_expensive must have as many entries as lambdas ({lam.size}), "
                    f"got {alt.size}"
                )
        g = check_number(gamma, "gamma", 0.0, 1.0)
        self.lambdas_, self.lambdas_expensive_, self.gamma_ = lam, alt, g
        return self

    # ------------------------------------------------------------------ estimation

    def _estimate(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """Estimator outputs for ``queries``, checked, columns in the internal model order."""
        n, k = len(queries), len(self.models)
        est = as_quality_estimate(self.quality_estimator.predict(queries, answers), n, k)
        cst = as_cost_estimate(self.cost_estimator.predict(queries, answers), n, k)
        if est.cov is not None:
            check_psd(est.cov, "covariance returned by the quality estimator")
        p = self.order_
        if p.shape[0] and p[0] == 0 and bool((p[1:] > p[:-1]).all()):
            return est, cst  # the identity order: nothing to permute
        mean = est.mean[:, p]
        var = None if est.var is None else est.var[:, p]
        cov = None if est.cov is None else est.cov[:, p][:, :, p]
        return QualityEstimate(mean, var, cov), cst[:, p]

    def _estimate_means(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """:meth:`_estimate` without the uncertainty (the decider holds it per run-set):
        the estimator's ``predict_mean`` if it has one."""
        n, k = len(queries), len(self.models)
        raw = predict_means(self.quality_estimator, queries, answers)
        if isinstance(raw, QualityEstimate):
            raw = raw.mean
        elif isinstance(raw, tuple) and len(raw) == 2:
            raw = raw[0]
        mean = as_quality_estimate(raw, n, k).mean
        cst = as_cost_estimate(self.cost_estimator.predict(queries, answers), n, k)
        p = self.order_
        if p.shape[0] and p[0] == 0 and bool((p[1:] > p[:-1]).all()):
            return QualityEstimate(mean), cst
        return QualityEstimate(mean[:, p]), cst[:, p]

    def _estimate_for_plan(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]], exclude: frozenset[int]
    ) -> tuple[QualityEstimate, NDArray[np.float64]]:
        """The estimates a decision needs: the means only when the prepared decider holds the
        uncertainty per run-set (:meth:`_plan_estimated` then uses it), else everything."""
        if self.uses_decider and not exclude and has_runset_uncertainty(self.quality_estimator):
            return self._estimate_means(queries, answers)
        return self._estimate(queries, answers)

    # ------------------------------------------------------------------ the prepared decider

    def prepare(self) -> Strategy:
        """Compute the run-set table of the prepared decider (docs/decider.md §3).

        For a quality estimator that follows
        :class:`~cascade_routing.strategies.decider.RunSetUncertainty`, the factor of every
        run-set the strategy can reach (up to
        :data:`~cascade_routing.strategies.decider.MAX_TABLE_BYTES`) is computed now, so that
        no decision waits for it; ``fit`` calls this, and ``save`` writes the table with the
        policy. Other estimators need no table (``runset_table_`` stays ``None``).
        """
        qe = self.quality_estimator
        if not self.uses_decider or not has_runset_uncertainty(qe):
            self.runset_table_ = None
        else:
            self.runset_table_ = build_table(
                qe, self.order_.copy(), self._depth(len(self.models)), self.prefixes_only
            )
        self._table_source = qe
        self._decider, self._decider_key = None, ()
        return self

    def decider(self) -> Decider:
        """The prepared decider of the fitted policy (built once, rebuilt when the multipliers,
        the model order or the run-set table change).

        Exact estimators (no ``uncertainty(ran)`` method) give a decider for exact means;
        estimators that follow the run-set protocol one with their table (computed now if
        :meth:`prepare` has not run). See docs/decider.md.
        """
        if not self.uses_decider:
            raise TypeError(
                f"{type(self).__name__} makes no supermodel search; it has no prepared decider"
            )
        lam, alt = self._check_fitted()
        key = (lam, alt, self.order_, self.runset_table_, self.quality_estimator)
        d = self._decider
        if d is not None and all(a is b for a, b in zip(key, self._decider_key)):
            return d
        with _DECIDER_LOCK:
            qe = self.quality_estimator
            order = self.order_.copy()
            table = None
            mode = UncertaintyMode.EXACT
            source = None
            if has_runset_uncertainty(qe):
                table = self.runset_table_
                stale = self._table_source is not qe  # the estimator was replaced since
                if table is None or stale or not np.array_equal(table.order, order):
                    self.prepare()
                    table = self.runset_table_
                assert table is not None
                mode = table.mode

                def source(mask: int) -> tuple[UncertaintyMode, NDArray[np.float64]]:
                    return runset_factor(qe, order, mask)

            d = Decider(
                len(self.models),
                mode,
                lam,
                alt,
                self.options_,
                n_samples=self.n_samples,
                sample_seed=self.sample_seed,
                table=table,
                source=source,
                max_work=self.max_work,
            )
            self._decider = d
            self._decider_key = (lam, alt, self.order_, self.runset_table_, qe)
        return d

    def _ready_decider(self, ran: NDArray[np.bool_], exclude: frozenset[int]) -> None:
        """Make sure the decision at run-set ``ran`` needs no estimator call: the run loop
        calls this with the estimators, so that a failure there is an estimator failure."""
        if self.uses_decider and not exclude and has_runset_uncertainty(self.quality_estimator):
            self.decider().factor(mask_of(ran.tolist()))

    def _plan_estimated(
        self,
        query: Any,
        ran: NDArray[np.bool_],
        est: QualityEstimate,
        cst: NDArray[np.float64],
        exclude: frozenset[int],
        lams: tuple[NDArray[np.float64], NDArray[np.float64]],
    ) -> Plan:
        """One decision from estimates in the model order: the prepared decider when it
        applies (a search strategy, no exclusions, no per-query uncertainty), else
        :meth:`_plan`. Both give the same decisions."""
        if self.uses_decider and not exclude and est.var is None and est.cov is None:
            return self._plan_prepared(query, ran, est.mean[0], cst[0], lams)
        return self._plan(query, ran, est, cst, exclude, lams)

    def _plan_prepared(
        self,
        query: Any,
        ran: NDArray[np.bool_],
        q: NDArray[np.float64],
        c: NDArray[np.float64],
        lams: tuple[NDArray[np.float64], NDArray[np.float64]],
    ) -> Plan:
        d = self.decider()
        _, j, lam_steps, expensive = self._step(query, ran, frozenset(), lams)
        lam = float(lam_steps[min(j, lam_steps.shape[0] - 1)])
        nm, members, util = d.decide(q, c, mask_of(ran.tolist()), expensive)
        perm = self.order_
        mem = [int(perm[i]) for i in mask_bits(members, len(self.models))]
        if nm < 0:
            return self._make_plan(-1, mem, util, lam, 0.0)
        return self._make_plan(int(perm[nm]), mem, util, lam, float(c[nm]))

    # ------------------------------------------------------------------ one decision

    def _check_state(self, answers: Sequence[Any]) -> NDArray[np.bool_]:
        """Which models (internal order) have answered; checks the answers row."""
        check_answers([answers], 1, len(self.models), full=False)
        return np.array([answers[p] is not None for p in self.order_.tolist()], dtype=np.bool_)

    def _exclusions(self, exclude: Iterable[str]) -> frozenset[int]:
        if isinstance(exclude, str):
            exclude = (exclude,)
        return frozenset(model_index(self._index, m) for m in exclude)

    def plan(self, query: Any, answers: Sequence[Any], *, exclude: Iterable[str] = ()) -> Plan:
        """The next decision on ``query`` given the answers so far (``None`` = not run).

        Models named in ``exclude`` (e.g. failed ones) are left out of the decision.
        """
        lams = self._check_fitted()
        ran = self._check_state(answers)
        excl = self._exclusions(exclude)
        est, cst = self._estimate_for_plan([query], [answers], excl)
        return self._plan_estimated(query, ran, est, cst, excl, lams)

    def _plan_internal(
        self,
        query: Any,
        answers: Sequence[Any],
        est: QualityEstimate,
        cst: NDArray[np.float64],
        exclude: frozenset[int],
    ) -> Plan:
        """:meth:`plan` from estimates already made (the loop estimates once per step)."""
        return self._plan_estimated(
            query, self._check_state(answers), est, cst, exclude, self._check_fitted()
        )

    def _make_plan(
        self,
        nxt: int,
        members: Iterable[int],
        utility: float,
        lam: float,
        est_cost: float,
    ) -> Plan:
        """A :class:`Plan` from positions in ``models`` (``nxt`` -1: stop)."""
        ms = tuple(sorted(int(i) for i in members))
        return Plan(
            nxt,
            None if nxt < 0 else self.models[nxt],
            tuple(self.models[i] for i in ms),
            ms,
            utility,
            lam,
            est_cost,
        )

    def _step(
        self,
        query: Any,
        ran: NDArray[np.bool_],
        exclude: frozenset[int],
        lams: tuple[NDArray[np.float64], NDArray[np.float64]],
    ) -> tuple[NDArray[np.bool_] | None, int, NDArray[np.float64], bool]:
        """Where one query stands: which models may still run (``None``: all), how many of
        those have run, the per-step multipliers of the policy its coin picks (§2), and whether
        that is the expensive one."""
        keep = (
            np.array([int(p) not in exclude for p in self.order_], dtype=bool) if exclude else None
        )
        expensive = self.gamma_ > 0.0 and query_coin(query, self.seed) < self.gamma_
        lam_steps = lams[1] if expensive else lams[0]
        j = int(ran.sum() if keep is None else ran[keep].sum())
        return keep, j, lam_steps, expensive

    def _plan(
        self,
        query: Any,
        ran: NDArray[np.bool_],
        est: QualityEstimate,
        cst: NDArray[np.float64],
        exclude: frozenset[int],
        lams: tuple[NDArray[np.float64], NDArray[np.float64]],
    ) -> Plan:
        """The supermodel search of docs/algorithm.md §3 for one query (internal order)."""
        k = len(self.models)
        perm = self.order_
        keep, j, lam_steps, expensive = self._step(query, ran, exclude, lams)
        lam = float(lam_steps[min(j, lam_steps.shape[0] - 1)])
        # Failed models are left out of the search; without any, no copies are needed.
        sub = np.arange(k) if keep is None else np.flatnonzero(keep)
        kk = sub.shape[0]
        if kk == 0:
            return self._make_plan(-1, (), math.nan, lam, 0.0)
        be = _backend.active()
        if keep is None:
            q, c = est.mean[0], cst[0]
        else:
            q, c = np.ascontiguousarray(est.mean[0, sub]), np.ascontiguousarray(cst[0, sub])
        if est.var is not None:
            mode = UncertaintyMode.INDEPENDENT
            sd, chol = np.sqrt(est.var[0] if keep is None else est.var[0, sub]), _NO_CHOL
        elif est.cov is not None:
            mode, sd = UncertaintyMode.COVARIANCE, np.zeros(0)
            chol = be.cholesky_psd(np.ascontiguousarray(est.cov[0][np.ix_(sub, sub)]))
        else:
            mode, sd, chol = UncertaintyMode.EXACT, _NO_SD, _NO_CHOL
        normals = (
            standard_normals(kk, self.n_samples, self.sample_seed) if mode else np.zeros((0, kk))
        )
        ran_sub = (ran if keep is None else ran[sub]).astype(np.uint8)
        if self.prefixes_only and np.any(ran_sub[: int(ran_sub.sum())] == 0):
            raise ValueError(
                "a cascade runs models in order; answers must come from a prefix of the "
                "model order"
            )
        options = self.options_
        depth = max(min(options.max_depth, kk), j)
        if depth != options.max_depth:
            options = dataclasses.replace(options, max_depth=depth)
        nm, mask, util, _, _, _ = be.run_search(
            q, c, lam, mode, sd, chol, normals, ran_sub, options, expensive
        )
        members = perm[sub[np.asarray(mask).nonzero()[0]]].tolist()
        if nm < 0:
            return self._make_plan(-1, members, float(util), lam, 0.0)
        return self._make_plan(int(perm[sub[nm]]), members, float(util), lam, float(c[nm]))

    def next_model(self, query: Any, answers: Sequence[Any]) -> str | None:
        """The model to run next on ``query`` given the answers so far, or ``None`` to stop."""
        return self.plan(query, answers).model

    def next_models(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> list[str | None]:
        """:meth:`next_model` for many queries."""
        check_answers(answers, len(queries), len(self.models), full=False)
        return [self.next_model(q, a) for q, a in zip(queries, answers)]

    # ------------------------------------------------------------------ selection

    def _select_index(self, post_mean: NDArray[np.float64], ran: NDArray[np.bool_]) -> int:
        """Selection in the internal order: the run model with the best post-hoc estimate
        (ties: the earliest in the model order; :func:`_reference.select_best`)."""
        return int(select_best(post_mean, ran))  # type: ignore[no-untyped-call]

    def select(self, query: Any, answers: Sequence[Any]) -> str | None:
        """The model whose answer to return: the run model with the highest post-hoc estimate
        (ties: the earliest in the model order)."""
        ran = self._check_state(answers)
        if not ran.any():
            return None
        est, _ = self._estimate([query], [answers])
        return self._select_from(ran, est.mean[0])

    def _select_from(self, ran: NDArray[np.bool_], post_mean: NDArray[np.float64]) -> str | None:
        """:meth:`select` from estimates already made (``ran`` and ``post_mean`` internal)."""
        i = self._select_index(post_mean, ran)
        return None if i < 0 else self.models[int(self.order_[i])]

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        query: Any,
        call_model: Callable[[str, Any], Any],
        *,
        timeout: float | None = None,
        max_calls: int | None = None,
        max_cost: float | None = None,
        deadline: float | None = None,
        fallback_model: str | None = None,
    ) -> RunResult:
        """Decide, call ``call_model(name, query)``, record, re-plan, until the strategy stops.

        See :func:`cascade_routing.strategies.loop.run` for the contract (failures, timeouts,
        estimator failures, the per-query caps ``max_calls``, ``max_cost`` and ``deadline``,
        and the ``fallback_model``).
        """
        return loop.run(
            self,
            query,
            call_model,
            timeout=timeout,
            max_calls=max_calls,
            max_cost=max_cost,
            deadline=deadline,
            fallback_model=fallback_model,
        )

    async def arun(
        self,
        query: Any,
        call_model: Callable[[str, Any], Awaitable[Any] | Any],
        *,
        timeout: float | None = None,
        max_calls: int | None = None,
        max_cost: float | None = None,
        deadline: float | None = None,
        fallback_model: str | None = None,
        executor: Executor | None = None,
        offload_planning: bool = False,
    ) -> RunResult:
        """:meth:`run` for asyncio (``call_model`` may be async or not; a synchronous one runs
        in ``executor``, and so does planning with ``offload_planning``); see
        :func:`cascade_routing.strategies.loop.arun`."""
        return await loop.arun(
            self,
            query,
            call_model,
            timeout=timeout,
            max_calls=max_calls,
            max_cost=max_cost,
            deadline=deadline,
            fallback_model=fallback_model,
            executor=executor,
            offload_planning=offload_planning,
        )

    # ------------------------------------------------------------------ replay hooks

    def replay_arguments(
        self, lambdas: NDArray[np.float64], k: int
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(search multipliers, thresholds)`` of the compiled replay for ``lambdas``."""
        return np.ascontiguousarray(lambdas, dtype=np.float64), np.zeros(k)

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
        """Step ``j`` of the estimator replay for a batch of queries: next model or -1."""
        n, k = est.mean.shape
        be = _backend.active()
        if est.var is not None:
            mode = UncertaintyMode.INDEPENDENT
            sd, chol = np.ascontiguousarray(np.sqrt(est.var)), np.zeros((n, 0, 0))
        elif est.cov is not None:
            mode, sd = UncertaintyMode.COVARIANCE, np.zeros((n, 0))
            chol = np.ascontiguousarray(
                np.stack([be.cholesky_psd(np.ascontiguousarray(c)) for c in est.cov])
            )
        else:
            mode, sd, chol = UncertaintyMode.EXACT, np.zeros((n, 0)), np.zeros((n, 0, 0))
        normals = (
            standard_normals(k, self.n_samples, self.sample_seed) if mode else np.zeros((0, k))
        )
        nm = be.run_search_batch(
            np.ascontiguousarray(est.mean),
            np.ascontiguousarray(cst),
            np.full(n, float(lam_steps[j])),
            mode,
            sd,
            chol,
            normals,
            np.ascontiguousarray(ran, dtype=np.uint8),
            self.options_,
            np.full(n, 1 if prefer_expensive else 0, dtype=np.uint8),
            n_threads,
        )[0]
        return np.asarray(nm, dtype=np.int64)

    @property
    def select_last(self) -> bool:
        """Whether the answer is the last model run (else the best post-hoc estimate)."""
        return False

    # ------------------------------------------------------------------ replay and fitting

    def _validate_logged(
        self,
        queries: Queries,
        answers: Sequence[Sequence[Any]],
        quality: ArrayLike,
        cost: ArrayLike,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if not hasattr(queries, "__len__"):
            raise TypeError("queries must be a sequence (or an array) of queries")
        n, k = len(queries), len(self.models)
        if n == 0:
            raise ValueError("queries is empty; pass at least one logged query")
        check_answers(answers, n, k, full=True)
        hint = "drop or fill those rows first"
        layout = "queries x models"
        q = float_array(quality, "quality", 2, shape=(n, k), layout=layout, hint=hint)
        c = float_array(cost, "cost", 2, shape=(n, k), layout=layout, hint=hint, nonnegative=True)
        return q, c

    def replay(
        self,
        queries: Queries,
        answers: Sequence[Sequence[Any]],
        quality: ArrayLike,
        cost: ArrayLike,
        *,
        engine: str = "compiled",
        n_threads: int = 1,
    ) -> ReplayResult:
        """Run the fitted strategy on logged data (every model's answer known) and score it.

        Each query uses the γ coin of :func:`query_coin`. ``engine="python"`` replays with
        one :meth:`plan` call per query and step (slow; a check of the fast path).
        """
        check_choice(engine, "engine", ("compiled", "python"))
        q, c = self._validate_logged(queries, answers, quality, cost)
        return replay.replay_strategy(self, queries, answers, q, c, engine, n_threads)

    def fit_scale(
        self,
        evaluate: fitting.Evaluate,
        shape: NDArray[np.float64],
        budget: float,
        iters: int,
        rep: Replayer,
    ) -> fitting.ScaleFit:
        """The multipliers ``λ = s · shape`` that meet ``budget`` (see :mod:`.fitting`)."""
        return fitting.fit_multiplier_scale(evaluate, shape, budget, iters)

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
    ) -> Strategy:
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

        A budget outside the achievable range is reported in ``fit_info_["status"]``
        (``"budget_below_cheapest"`` or ``"budget_above_dearest"``); the nearest policy is
        used. See docs/algorithm.md §9.
        """
        fitting.fit(
            self,
            queries,
            answers,
            quality,
            cost,
            budget=budget,
            lambdas=lambdas,
            n_iter=n_iter,
            n_trials=n_trials,
            seed=seed,
            n_threads=n_threads,
            progress=progress,
        )
        self.prepare()  # the run-set table: no decision waits for it (docs/decider.md §3)
        return self

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (what :meth:`save` writes); docs/policy-format.md."""
        return persistence.to_dict(self)

    def save(self, path: str | Path) -> None:
        """Write the fitted policy as versioned JSON (estimators are not saved)."""
        persistence.save(self, path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        quality_estimator: Any,
        cost_estimator: Any,
        *,
        models: Sequence[str] | None = None,
    ) -> Strategy:
        """Read a policy written by :meth:`save` and attach the estimators to it.

        See :func:`cascade_routing.load_policy`. Called on a subclass, the file must hold
        that strategy.
        """
        return persistence.load_policy(
            path,
            quality_estimator,
            cost_estimator,
            models=models,
            expected=None if cls is Strategy else cls,
        )


__all__ = ["Plan", "Queries", "Strategy", "query_coin"]
