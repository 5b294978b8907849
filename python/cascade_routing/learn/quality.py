"""A quality estimator learned from a service's own logs (docs/estimators.md).

:class:`LearnedQuality` predicts, for every model ``j``, the probability that ``j``'s answer to
a query is correct, given the query and the answers of the models that have run so far
(run-set ``R``). It follows scikit-learn's conventions (hyper-parameters in ``__init__``,
``fit`` then ``predict``, fitted attributes end in ``_``) and returns a
:class:`~cascade_routing.estimators.QualityEstimate` with a full covariance, so it plugs into
every strategy unchanged.

The model, in two stages:

1. **Ex ante** (nothing has run): a multi-output ridge regression on hashed word uni- and
   bigrams of the query text (scikit-learn's ``HashingVectorizer``: stateless, nothing to store
   but its settings), plus the numeric features and the one-hot group the caller supplies.
   Its out-of-fold scores for the training queries feed stage 2, so stage 2 never sees a score
   fitted on its own label.
2. **Post hoc, run-set aware**: per target model ``j`` two pooled logistic regressions, one for
   run-sets that contain ``j`` and one for those that do not. Their inputs are the ex-ante
   scores of all models plus, for every model ``i``, features multiplied by the run indicator
   ``r_i`` (the missing-indicator formulation): ``r_i``, ``r_i·s_i`` with ``s_i`` the normal score
   ``Φ⁻¹(F_i(confidence_i))`` under model ``i``'s training confidences (so any increasing score
   works the same),
   ``r_i·[confidence missing]``, ``r_i·log answer length``, statistics of the token
   log-probabilities when the logs have them, and for every pair ``r_i·r_l·[parsed_i =
   parsed_l]``, the size of the largest agreeing group, and per target the fraction of run
   models agreeing with ``j``, their mean confidence, and ``j``'s own confidence and agreement
   times the share of other models that have run (so the weight of ``j``'s own signal can
   shrink as more is known). They are trained on every training query under several run-sets
   (all prefixes of the cost order, every model alone, and ``n_random_runsets`` random
   subsets).

   Trade-off versus the paper's one model per (target, run-set) (2^k·k models): the pooled
   model is linear in the masked features, so the effect of model ``i``'s confidence on ``j``
   does not depend on which *other* models ran (only on whether ``j`` itself ran); in return
   it has ``2k`` models of ``O(k²)`` weights, uses all run-sets' data for every weight, fits in
   seconds at ``k = 11`` and generalises to run-sets never seen in training.

**Calibration**: the stage-2 logits of held-out folds (``n_folds``-fold cross-fitting of both
stages) are mapped to probabilities by Platt scaling or isotonic regression, per target model
and "target has run or not". :meth:`LearnedQuality.calibration_report` gives the Brier score
and expected calibration error per model before and after, on data the caller holds out.

**Uncertainty** (docs/algorithm.md §6): for each run-set ``R``, ``Σ_R`` is the covariance over
held-out (out-of-fold) training queries of (estimate given ``R``) − (estimate given all models
run), multiplied by a scale ``s``. With ``uncertainty_scale="fit"``, ``s`` is chosen on the
same held-out predictions from ``scale_grid`` to minimise the squared error between the
*predicted gain* of running one more model ``m`` (``E[max_{R∪{m}} Z] − E[max_R Z]`` under
``N(q̂_R, s·Σ_R)``, clipped to ``quality_bounds``) and the *realised gain* (the true quality of
the answer selected after running ``m`` minus that selected before): the quantity the
strategies trade against cost. ``Σ_R`` and its Cholesky factor are computed at fit time for
every run-set up to ``max_depth`` models; a deeper run-set uses the ``Σ`` of its first
``max_depth`` models in cost order, with zero (co)variance for the other run models.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..answers import ModelAnswer
from ..estimators import QualityEstimate
from ..validation import (
    check_choice,
    check_int,
    check_model_names,
    check_number,
    float_array,
    model_index,
)

logger = logging.getLogger(__name__)

__all__ = ["CrossFittedQuality", "LearnedQuality", "brier_score", "expected_calibration_error"]

#: Largest number of models for which every run-set's covariance is precomputed by default.
MAX_ALL_RUNSETS = 12
_Z_CLIP = 6.0
_P_EPS = 1e-6
_LOGIT_CLIP = math.log((1.0 - _P_EPS) / _P_EPS)
_N_KNOTS = 65  # knots of each model's confidence CDF
_U_EPS = 1e-3  # the confidence CDF is clipped to [_U_EPS, 1 - _U_EPS] (|score| <= 3.1)


# --------------------------------------------------------------------------- metrics


def brier_score(prob: ArrayLike, outcome: ArrayLike) -> float:
    """Mean squared difference between predicted probabilities and outcomes in ``[0, 1]``."""
    p = float_array(prob, "prob", 1)
    y = float_array(outcome, "outcome", 1, shape=p.shape)
    return float(np.mean((p - y) ** 2)) if p.size else math.nan


def expected_calibration_error(prob: ArrayLike, outcome: ArrayLike, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width bins: ``Σ_b (n_b/n)·|mean p_b − mean y_b|``."""
    p = float_array(prob, "prob", 1)
    y = float_array(outcome, "outcome", 1, shape=p.shape)
    n_bins = check_int(n_bins, "n_bins", 1)
    if p.size == 0:
        return math.nan
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += sel.sum() / p.size * abs(p[sel].mean() - y[sel].mean())
    return float(total)


# --------------------------------------------------------------------------- input parsing


def _sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Logistic function, kept inside ``[_P_EPS, 1 − _P_EPS]``: a linear model on a few
    hundred logs can separate them, and no answer is certain from its features."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.clip(x, -_LOGIT_CLIP, _LOGIT_CLIP)))


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    q = np.clip(p, _P_EPS, 1.0 - _P_EPS)
    return np.log(q / (1.0 - q))


class _Queries:
    """Texts, numeric features and groups of a batch of queries."""

    def __init__(self, texts: list[str], numeric: list[Any], groups: list[Any]) -> None:
        self.texts = texts
        self.numeric = numeric
        self.groups = groups


def _parse_queries(queries: Any) -> _Queries:
    if isinstance(queries, (str, bytes, Mapping)) or not isinstance(queries, Sequence):
        raise TypeError(
            "queries must be a sequence (one entry per query) of texts or of dicts with 'text' "
            "and optionally 'features' and 'group'"
        )
    texts: list[str] = []
    numeric: list[Any] = []
    groups: list[Any] = []
    for i, q in enumerate(queries):
        if isinstance(q, str):
            texts.append(q)
            numeric.append(None)
            groups.append(None)
            continue
        if not isinstance(q, Mapping):
            raise TypeError(
                f"queries[{i}] must be a str or a dict with 'text', got {type(q).__name__}"
            )
        text = q.get("text", "")
        if not isinstance(text, str):
            raise TypeError(f"queries[{i}]['text'] must be a str, got {type(text).__name__}")
        texts.append(text)
        numeric.append(q.get("features"))
        group = q.get("group")
        if group is not None:
            try:
                hash(group)
            except TypeError:
                raise TypeError(f"queries[{i}]['group'] must be hashable (e.g. a str)") from None
        groups.append(group)
    return _Queries(texts, numeric, groups)


class _Answers:
    """Per-(query, model) arrays derived from the answers (NaN where a model has not run)."""

    def __init__(self, n: int, k: int) -> None:
        self.ran = np.zeros((n, k), dtype=bool)
        self.conf = np.full((n, k), np.nan)  # raw confidence; -inf kept
        self.length = np.zeros((n, k))  # log(1 + characters)
        self.lp_mean = np.full((n, k), np.nan)
        self.lp_min = np.full((n, k), np.nan)
        self.agree = np.zeros((n, k, k))
        self.cost = np.full((n, k), np.nan)


# --------------------------------------------------------------------------- the estimator


class LearnedQuality:
    """Probability of a correct answer per model, given the query and the answers so far.

    Parameters
    ----------
    models : sequence of str, optional
        Model names, in the column order of ``answers`` and ``quality``. With names, an
        answers row may also be a dict ``{model name: ModelAnswer}``. Default ``m0, m1, ...``.
    n_hash_features : int
        Width of the hashed text features (word uni- and bigrams).
    alphas_ante : sequence of float
        Ridge penalties tried for the ex-ante text model (the best out-of-fold error wins).
    C_post : float
        Inverse L2 regularisation of the post-hoc logistic regressions.
    n_random_runsets : int
        Random run-sets per training query, on top of every prefix of the cost order.
    n_folds : int
        Folds of the cross-fitting that yields held-out predictions for calibration and
        uncertainty (>= 3: stage 2 of fold g is trained on ex-ante scores of a nested fit).
    calibration : {"platt", "isotonic", "none"}
        Map from held-out logits to probabilities.
    max_depth : int, optional
        Precompute ``Σ_R`` for run-sets of up to this many models (default: every run-set,
        allowed for at most 12 models).
    uncertainty_scale : "fit" or float
        Scale of ``Σ_R``; ``"fit"`` picks it from ``scale_grid`` (see the module docstring).
    scale_grid : sequence of float
        Candidate scales.
    quality_bounds : (float, float)
        Bounds of the quality samples when fitting the scale (as the strategies'
        ``quality_bounds``).
    require_confidence : bool
        Raise if an answer has no confidence (instead of using the missing indicator).
    n_cov_rows : int
        At most this many held-out training queries for ``Σ_R`` and the scale.
    cache_size : int
        Ex-ante estimates of this many recent queries are kept (a service calls ``predict``
        once per step on the same query).
    seed : int
        Seed of the folds, the random run-sets and the samples of the scale fit.
    """

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        n_hash_features: int = 1 << 15,
        alphas_ante: Sequence[float] = (1.0, 3.0, 10.0),
        C_post: float = 1.0,
        n_random_runsets: int = 8,
        n_folds: int = 3,
        calibration: str = "platt",
        max_depth: int | None = None,
        uncertainty_scale: str | float = "fit",
        scale_grid: Sequence[float] = (0.0, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0),
        quality_bounds: tuple[float, float] = (0.0, 1.0),
        require_confidence: bool = False,
        n_cov_rows: int = 2000,
        cache_size: int = 4096,
        seed: int = 0,
    ) -> None:
        self.models = None if models is None else check_model_names(models)
        self.n_hash_features = check_int(n_hash_features, "n_hash_features", 16, 1 << 22)
        alphas = [check_number(a_, "alphas_ante", 1e-12) for a_ in alphas_ante]
        if not alphas:
            raise ValueError("alphas_ante must hold at least one ridge penalty > 0")
        self.alphas_ante = tuple(alphas)
        self.C_post = check_number(C_post, "C_post", 1e-12)
        self.n_random_runsets = check_int(n_random_runsets, "n_random_runsets", 0, 1000)
        self.n_folds = check_int(n_folds, "n_folds", 3, 20)
        self.calibration = check_choice(calibration, "calibration", ("platt", "isotonic", "none"))
        self.max_depth = None if max_depth is None else check_int(max_depth, "max_depth", 1)
        if isinstance(uncertainty_scale, str):
            check_choice(uncertainty_scale, "uncertainty_scale", ("fit",))
            self.uncertainty_scale: str | float = uncertainty_scale
        else:
            self.uncertainty_scale = check_number(uncertainty_scale, "uncertainty_scale", 0.0)
        grid = [check_number(s, "scale_grid", 0.0) for s in scale_grid]
        if not grid:
            raise ValueError("scale_grid must hold at least one scale >= 0")
        self.scale_grid = tuple(grid)
        lo, hi = (check_number(b, "quality_bounds") for b in quality_bounds)
        if not lo < hi:
            raise ValueError(f"quality_bounds must be (low, high) with low < high, got {lo, hi}")
        self.quality_bounds = (lo, hi)
        if not isinstance(require_confidence, bool):
            raise TypeError("require_confidence must be a bool")
        self.require_confidence = require_confidence
        self.n_cov_rows = check_int(n_cov_rows, "n_cov_rows", 2)
        self.cache_size = check_int(cache_size, "cache_size", 0)
        self.seed = check_int(seed, "seed", 0)
        self._cache: dict[Any, NDArray[np.float64]] = {}
        self._lock = threading.Lock()
        # Lookup tables derived from the fitted state, built on first use.
        self._conf_lookup: tuple[NDArray[np.float64], ...] | None = None
        self._index: dict[str, int] | None = None

    # ------------------------------------------------------------------ parsing

    @property
    def n_models_(self) -> int:
        self._check_fitted()
        return len(self.models_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise RuntimeError(
                "LearnedQuality is not fitted; call fit(queries, answers, quality) first"
            )

    def _model_index(self) -> dict[str, int]:
        """Column of each model name (built once per fitted state)."""
        index = self._index
        if index is None:
            index = self._index = {m: j for j, m in enumerate(self.models_)}
        return index

    def _parse_answers(self, answers: Any, n: int, k: int, *, full: bool) -> _Answers:
        if isinstance(answers, (str, bytes, Mapping)) or not isinstance(answers, Sequence):
            raise TypeError("answers must be a sequence with one row per query")
        if len(answers) != n:
            raise ValueError(f"answers has {len(answers)} rows; expected one per query ({n})")
        out = _Answers(n, k)
        index = self._model_index()
        for i, row in enumerate(answers):
            if isinstance(row, Mapping):
                entries: list[Any] = [None] * k
                for name, a in row.items():
                    entries[model_index(index, name, what=f"model in answers[{i}]")] = a
            elif isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
                raise TypeError(
                    f"answers[{i}] must be a sequence with one entry per model (or a dict "
                    "model name -> ModelAnswer)"
                )
            else:
                if len(row) != k:
                    raise ValueError(
                        f"answers[{i}] has {len(row)} entries; expected one per model ({k})"
                    )
                entries = list(row)
            parsed: list[Any] = [None] * k
            for j, a in enumerate(entries):
                if a is None:
                    if full:
                        raise ValueError(
                            f"answers[{i}][{j}] is None; fit needs every model's answer"
                        )
                    continue
                if not isinstance(a, ModelAnswer):
                    raise TypeError(
                        f"answers[{i}][{j}] must be a ModelAnswer or None, got "
                        f"{type(a).__name__} (wrap raw outputs, e.g. ModelAnswer(text, parsed, "
                        "confidence))"
                    )
                out.ran[i, j] = True
                conf = a.confidence
                if conf is None:
                    if self.require_confidence:
                        raise ValueError(
                            f"answers[{i}][{j}].confidence is None but require_confidence=True"
                        )
                elif math.isnan(conf):
                    raise ValueError(f"answers[{i}][{j}].confidence is NaN")
                else:
                    out.conf[i, j] = conf
                out.length[i, j] = math.log1p(len(a.text))
                if a.logprobs:
                    lps = a.logprobs
                    out.lp_mean[i, j] = max(math.fsum(lps) / len(lps), -50.0)
                    out.lp_min[i, j] = max(min(lps), -50.0)
                if a.cost is not None:
                    out.cost[i, j] = a.cost
                parsed[j] = a.parsed
            for j in range(k):
                pj = parsed[j]
                if pj is None:
                    continue
                for m in range(j + 1, k):
                    if parsed[m] is not None and parsed[m] == pj:
                        out.agree[i, j, m] = out.agree[i, m, j] = 1.0
        return out

    # ------------------------------------------------------------------ ex-ante stage

    def _vectorizer(self) -> Any:
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(
            n_features=self.n_hash_features,
            ngram_range=(1, 2),
            alternate_sign=False,
            binary=True,
            norm="l2",
        )

    def _numeric(self, q: _Queries, *, fitting: bool) -> NDArray[np.float64]:
        """Standardised numeric features and group one-hot, ``(n, n_numeric + n_groups)``."""
        n = len(q.texts)
        if fitting:
            first = q.numeric[0] if n else None
            if isinstance(first, Mapping):
                self.feature_names_: tuple[str, ...] | None = tuple(sorted(first))
                self.n_numeric_ = len(self.feature_names_)
            elif first is None:
                self.feature_names_ = None
                self.n_numeric_ = 0
            else:
                self.feature_names_ = None
                self.n_numeric_ = len(np.atleast_1d(np.asarray(first)))
        num = np.zeros((n, self.n_numeric_))
        for i, f in enumerate(q.numeric):
            if self.n_numeric_ == 0:
                if f is not None:
                    raise ValueError(
                        f"queries[{i}]['features'] given, but the estimator was fitted without "
                        "numeric features"
                    )
                continue
            if f is None:
                raise ValueError(f"queries[{i}] has no 'features'; the estimator needs them")
            if self.feature_names_ is not None:
                if not isinstance(f, Mapping):
                    raise TypeError(
                        f"queries[{i}]['features'] must be a dict like the training queries'"
                    )
                missing = [name for name in self.feature_names_ if name not in f]
                if missing:
                    raise ValueError(f"queries[{i}]['features'] lacks {missing}")
                vals: Any = [f[name] for name in self.feature_names_]
            else:
                vals = f
            if not _all_real(vals):
                raise TypeError(f"queries[{i}]['features'] must hold numbers, got {vals!r:.80}")
            num[i] = float_array(
                np.asarray(vals, dtype=np.float64),
                f"queries[{i}]['features']",
                1,
                shape=(self.n_numeric_,),
            )
        if fitting:
            self.num_mean_ = num.mean(axis=0) if n else np.zeros(self.n_numeric_)
            sd = num.std(axis=0) if n else np.ones(self.n_numeric_)
            self.num_sd_ = np.where(sd > 0, sd, 1.0)
            seen = sorted({g for g in q.groups if g is not None}, key=repr)
            self.groups_ = tuple(seen) if len(seen) > 1 else ()
        num = (num - self.num_mean_) / self.num_sd_
        if self.groups_:
            index = {g: c for c, g in enumerate(self.groups_)}
            onehot = np.zeros((n, len(self.groups_)))
            for i, g in enumerate(q.groups):
                c = index.get(g)
                if c is not None:
                    onehot[i, c] = 1.0
            num = np.hstack([num, onehot])
        return num

    def _ante_design(self, q: _Queries, *, fitting: bool) -> Any:
        from scipy import sparse

        text = self._vectorizer().transform(q.texts)
        num = self._numeric(q, fitting=fitting)
        if num.shape[1]:
            return sparse.hstack([text, sparse.csr_matrix(num)], format="csr")
        return text.tocsr()

    def _fit_ante(
        self, x: Any, y: NDArray[np.float64], alpha: float
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Ridge regression of every model's quality at once: coefficients ``(d, k)`` and
        intercepts ``(k,)``. Stage 1 only feeds stage 2 (which makes the probabilities), so a
        linear score suffices, and one multi-output solve is much faster than k logistic fits
        on tens of thousands of hashed columns."""
        from sklearn.linear_model import Ridge

        model = Ridge(alpha=alpha, solver="sparse_cg", tol=1e-6, random_state=self.seed)
        model.fit(x, y)
        coef = np.asarray(model.coef_, dtype=np.float64).T.reshape(x.shape[1], y.shape[1])
        return np.ascontiguousarray(coef), np.asarray(model.intercept_, dtype=np.float64).ravel()

    def _ante_logits(self, q: _Queries) -> NDArray[np.float64]:
        """Ex-ante logits ``(n, k)`` of new queries, cached per query."""
        n = len(q.texts)
        out = np.empty((n, len(self.models_)))
        keys = [
            (t, None if f is None else repr(f), g) for t, f, g in zip(q.texts, q.numeric, q.groups)
        ]
        todo = []
        for i, key in enumerate(keys):
            hit = self._cache.get(key) if self.cache_size else None
            if hit is None:
                todo.append(i)
            else:
                out[i] = hit
        if todo:
            sub = _Queries(
                [q.texts[i] for i in todo],
                [q.numeric[i] for i in todo],
                [q.groups[i] for i in todo],
            )
            x = self._ante_design(sub, fitting=False)
            logits = np.asarray(x @ self.ante_coef_) + self.ante_intercept_
            out[todo] = logits
            if self.cache_size:
                with self._lock:
                    for i, row in zip(todo, logits):
                        if len(self._cache) >= self.cache_size:
                            self._cache.pop(next(iter(self._cache)))
                        self._cache[keys[i]] = row.copy()
        return out

    # ------------------------------------------------------------------ post-hoc stage

    def _answer_stats(self, a: _Answers, *, fitting: bool) -> None:
        """Fit (when ``fitting``) the per-model standardisation of the answer features."""
        if not fitting:
            return
        k = a.ran.shape[1]

        def stats(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
            mu = np.zeros(k)
            sd = np.ones(k)
            for j in range(k):
                col = v[:, j]
                col = col[np.isfinite(col)]
                if col.size:
                    mu[j] = col.mean()
                    s = col.std()
                    sd[j] = s if s > 0 else 1.0
            return mu, sd

        # Confidence: normal scores of the training distribution per model (a monotone map,
        # so any score works; a log-probability's informative range near 0 is spread out
        # instead of being squeezed by one very negative outlier, as a z-score would).
        grid = np.linspace(0.0, 1.0, _N_KNOTS)
        self.conf_knots_ = np.zeros((k, _N_KNOTS))
        self.conf_cdf_ = np.tile(grid, (k, 1))
        for j in range(k):
            col = a.conf[:, j]
            col = np.sort(col[np.isfinite(col)])
            if col.size:
                knots = np.quantile(col, grid)
                mid = np.searchsorted(col, knots, "left") + np.searchsorted(col, knots, "right")
                self.conf_knots_[j] = knots
                self.conf_cdf_[j] = mid / (2.0 * col.size)
        self._conf_lookup = None
        self.len_mean_, self.len_sd_ = stats(np.where(a.ran, a.length, np.nan))
        self.has_logprobs_ = bool(np.isfinite(a.lp_mean).any())
        self.lp_mean_mean_, self.lp_mean_sd_ = stats(a.lp_mean)
        self.lp_min_mean_, self.lp_min_sd_ = stats(a.lp_min)

    def _conf_tables(self) -> tuple[NDArray[np.float64], ...]:
        """Derived lookup tables of the confidence scores (built once per fitted state).

        Every model's CDF knots, shifted so that the models' ranges do not overlap, form one
        increasing table, so one ``np.interp`` call scores every model at once.
        """
        tables = self._conf_lookup
        if tables is None:
            lo, hi = self.conf_knots_[:, 0], self.conf_knots_[:, -1]
            width = hi - lo + 1.0
            shift = np.concatenate([[0.0], np.cumsum(width)[:-1]]) - lo
            xs = (self.conf_knots_ + shift[:, None]).ravel()
            tables = (lo, hi, shift, xs, self.conf_cdf_.ravel())
            self._conf_lookup = tables
        return tables

    def _conf_scores(self, conf: NDArray[np.float64]) -> NDArray[np.float64]:
        """Normal scores ``Φ⁻¹(F_j(c))`` of finite confidences ``(m, k)`` (the CDF linear
        between the knots of the training confidences, constant beyond them)."""
        from scipy.special import ndtri

        lo, hi, shift, xs, us = self._conf_tables()
        flat = np.minimum(np.maximum(conf, lo), hi) + shift
        u = np.interp(flat.ravel(), xs, us).reshape(conf.shape)
        return np.asarray(ndtri(np.clip(u, _U_EPS, 1.0 - _U_EPS)), dtype=np.float64)

    def _standardised(self, a: _Answers) -> dict[str, NDArray[np.float64]]:
        """Per-answer features, standardised, missing -> 0 with an indicator."""
        finite = np.isfinite(a.conf)
        z = self._conf_scores(np.where(finite, a.conf, self.conf_knots_[:, 0]))
        out = {
            "conf": np.where(finite, z, 0.0),
            "cmiss": (~finite).astype(np.float64),
            "len": np.clip((a.length - self.len_mean_) / self.len_sd_, -_Z_CLIP, _Z_CLIP),
        }
        if self.has_logprobs_:
            for name, v, mu, sd in (
                ("lpmean", a.lp_mean, self.lp_mean_mean_, self.lp_mean_sd_),
                ("lpmin", a.lp_min, self.lp_min_mean_, self.lp_min_sd_),
            ):
                ok = np.isfinite(v)
                out[name] = np.where(
                    ok, np.clip((np.nan_to_num(v) - mu) / sd, -_Z_CLIP, _Z_CLIP), 0.0
                )
        return out

    def _features(
        self,
        ante: NDArray[np.float64],
        std: dict[str, NDArray[np.float64]],
        agree: NDArray[np.float64],
        ran: NDArray[np.bool_],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Shared features ``(m, F)`` and per-target features ``(m, E, k)`` under ``ran``."""
        m, k = ran.shape
        r = ran.astype(np.float64)
        iu0, iu1 = _triu(k)
        blocks = [ante, r]
        blocks += [r * std[name] for name in ("conf", "cmiss", "len")]
        if self.has_logprobs_:
            blocks += [r * std["lpmean"], r * std["lpmin"]]
        ragree = agree * r[:, None, :] * r[:, :, None]
        blocks.append(ragree[:, iu0, iu1])
        n_run = r.sum(axis=1)
        cnt = ragree.sum(axis=2)  # run models agreeing with each run model
        others = n_run[:, None] - r
        share = others / max(k - 1, 1)  # share of the other models that have run
        frac = np.where(r > 0, cnt / np.maximum(others, 1.0), 0.0)
        largest = np.where(n_run > 0, (r * (cnt + 1.0)).max(axis=1) / np.maximum(n_run, 1.0), 0.0)
        blocks += [(n_run / k)[:, None], largest[:, None]]
        # Per target j: how the target's own signals weigh, by how much else is known.
        own = r * std["conf"]
        # mean standardised confidence of the run models that agree with the target
        agree_conf = (ragree * std["conf"][:, None, :]).sum(axis=2) / np.maximum(others, 1.0)
        extra = np.empty((m, 5, k))
        extra[:, 0] = frac
        extra[:, 1] = frac * share
        extra[:, 2] = own * share
        extra[:, 3] = r * std["cmiss"] * share
        extra[:, 4] = agree_conf
        return np.concatenate(blocks, axis=1), extra

    def _raw_logits(
        self, x: NDArray[np.float64], extra: NDArray[np.float64], ran: NDArray[np.bool_], g: int
    ) -> NDArray[np.float64]:
        """Stage-2 logits ``(m, k)`` of weight set ``g`` (a fold model, or the last: all data)."""
        w = self.W_[g]
        f, k = w.shape[0], w.shape[1]
        both = (x @ w.reshape(f, 2 * k)).reshape(-1, k, 2)  # both models of every target
        both += np.einsum("mek,eks->mks", extra, self.w_extra_[g])
        both += self.b_[g]
        return np.asarray(np.where(ran, both[:, :, 1], both[:, :, 0]), dtype=np.float64)

    def _calibrate(
        self, logits: NDArray[np.float64], ran: NDArray[np.bool_]
    ) -> NDArray[np.float64]:
        if self.calibration == "platt":
            a = np.where(ran, self.platt_[:, 1, 0], self.platt_[:, 0, 0])
            b = np.where(ran, self.platt_[:, 1, 1], self.platt_[:, 0, 1])
            return _sigmoid(a * logits + b)
        p = _sigmoid(logits)
        if self.calibration == "none":
            return p
        out = np.empty_like(p)
        for j in range(p.shape[1]):
            for s in (0, 1):
                sel = ran[:, j] == bool(s)
                if sel.any():
                    xs, ys = self.iso_x_[j][s], self.iso_y_[j][s]
                    out[sel, j] = np.interp(p[sel, j], xs, ys) if xs.size else p[sel, j]
        return out

    # ------------------------------------------------------------------ fit

    def fit(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]], quality: ArrayLike
    ) -> LearnedQuality:
        """Fit on logged queries with every model's answer and the true quality.

        Parameters
        ----------
        queries : sequence of str or dict
            Query texts, or dicts with ``"text"`` and optionally ``"features"`` (a dict of
            name -> number, or a sequence of numbers; the same for every query) and ``"group"``
            (a label, one-hot encoded). Other keys are ignored.
        answers : sequence of rows
            ``answers[i][j]``: model ``j``'s :class:`ModelAnswer` to query ``i`` (all present).
        quality : array_like, shape (n, k)
            True quality in ``[0, 1]`` (e.g. 0/1 correctness).
        """
        from threadpoolctl import threadpool_limits

        # Many small solves: BLAS threads only contend (with each other and other processes).
        with threadpool_limits(limits=1):
            return self._fit(queries, answers, quality)

    def _fit(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]], quality: ArrayLike
    ) -> LearnedQuality:
        from sklearn.model_selection import KFold

        q = _parse_queries(queries)
        n = len(q.texts)
        if n < 2 * self.n_folds:
            raise ValueError(
                f"queries has {n} queries; fit needs at least 2 * n_folds = {2 * self.n_folds}"
            )
        y = float_array(quality, "quality", 2, layout="queries x models")
        if y.shape[0] != n:
            raise ValueError(f"quality has {y.shape[0]} rows; expected one per query ({n})")
        if y.min() < 0 or y.max() > 1:
            raise ValueError("quality must lie in [0, 1] (e.g. 0/1 correctness)")
        k = y.shape[1]
        if self.models is not None and len(self.models) != k:
            raise ValueError(f"quality has {k} columns but models names {len(self.models)} models")
        self.models_ = self.models or tuple(f"m{j}" for j in range(k))
        self._index = None
        if self.max_depth is None and k > MAX_ALL_RUNSETS:
            raise ValueError(
                f"{k} models have 2^{k} run-sets: pass max_depth (e.g. 5) to precompute the "
                "covariances of the run-sets up to that size only"
            )
        a = self._parse_answers(answers, n, k, full=True)
        self._cache = {}
        rng = np.random.default_rng(self.seed)
        # Cost order of the models: ascending mean logged cost where every cost is known.
        if np.isfinite(a.cost).all():
            mean_cost = a.cost.mean(axis=0)
        else:
            mean_cost = np.zeros(k)  # costs unknown: the given order
        self.order_ = np.argsort(mean_cost, kind="stable").astype(np.int64)

        # Stage 1: ex-ante logits, out of fold for the training queries.
        x_ante = self._ante_design(q, fitting=True)
        folds = np.empty(n, dtype=np.int64)
        kf = KFold(self.n_folds, shuffle=True, random_state=self.seed)
        for f, (_, test) in enumerate(kf.split(np.arange(n))):
            folds[test] = f
        best: tuple[float, float] | None = None
        for alpha in self.alphas_ante:
            oof = np.empty((n, k))
            for f in range(self.n_folds):
                tr, te = folds != f, folds == f
                coef, icpt = self._fit_ante(x_ante[tr], y[tr], alpha)
                oof[te] = np.asarray(x_ante[te] @ coef) + icpt
            mse = float(np.mean((oof - y) ** 2))
            if best is None or mse < best[1] - 1e-12:
                best, oof_ante = (alpha, mse), oof
        assert best is not None
        self.alpha_ante_ = best[0]
        self.ante_coef_, self.ante_intercept_ = self._fit_ante(x_ante, y, self.alpha_ante_)

        # Stage 2: pooled run-set-aware models on augmented run-sets.
        self._answer_stats(a, fitting=True)
        std = self._standardised(a)
        runsets = self._training_runsets(n, k, rng)  # list of (rows, masks)
        rows = np.concatenate([r for r, _ in runsets])
        masks = np.concatenate([m for _, m in runsets])
        sub_std = {key: v[rows] for key, v in std.items()}
        sub_agree = a.agree[rows]
        x_all, extra_all = self._features(oof_ante[rows], sub_std, sub_agree, masks)
        n_feat, n_extra = x_all.shape[1], extra_all.shape[1]
        self.W_ = np.zeros((self.n_folds + 1, n_feat, k, 2))
        self.w_extra_ = np.zeros((self.n_folds + 1, n_extra, k, 2))
        self.b_ = np.zeros((self.n_folds + 1, k, 2))
        for g in range(self.n_folds + 1):
            if g < self.n_folds:
                # Fold model g: its training rows' ex-ante scores come from stage-1 models that
                # saw neither fold g nor the row's own fold, so nothing of fold g reaches it.
                nested = self._nested_ante(x_ante, y, folds, g, oof_ante)
                use = folds[rows] != g
                xg, eg = self._features(
                    nested[rows[use]],
                    {key: v[use] for key, v in sub_std.items()},
                    sub_agree[use],
                    masks[use],
                )
            else:
                use = np.ones(rows.size, dtype=bool)
                xg, eg = x_all, extra_all
            mg, yg, rg = masks[use], y[rows[use]], rows[use]
            for j in range(k):
                for s in (0, 1):
                    sel = mg[:, j] == bool(s)
                    xs = np.column_stack([xg[sel], eg[sel, :, j]])
                    # Each query weighs 1 in total however many run-sets it appears under,
                    # so the penalty C_post acts on the number of queries, not of copies.
                    copies = np.bincount(rg[sel], minlength=n)[rg[sel]]
                    # Fold models after the first start from the previous one, the model of
                    # all data from their mean: the same optimum in fewer Newton steps.
                    start = None
                    if g > 0:
                        prev = slice(0, g) if g == self.n_folds else slice(g - 1, g)
                        start = (
                            np.concatenate(
                                [
                                    self.W_[prev, :, j, s].mean(axis=0),
                                    self.w_extra_[prev, :, j, s].mean(axis=0),
                                ]
                            ),
                            float(self.b_[prev, j, s].mean()),
                        )
                    w, b = _logistic(
                        xs,
                        yg[sel, j],
                        self.C_post,
                        self.seed,
                        dense=True,
                        weight=1.0 / np.maximum(copies, 1),
                        start=start,
                    )
                    self.W_[g, :, j, s] = w[:n_feat]
                    self.w_extra_[g, :, j, s] = w[n_feat:]
                    self.b_[g, j, s] = b
        self.fold_ = folds
        self.oof_ante_ = oof_ante

        # Calibration on the held-out (out-of-fold) logits of the augmented run-sets.
        oof_logits = np.empty((rows.size, k))
        for f in range(self.n_folds):
            sel = folds[rows] == f
            oof_logits[sel] = self._raw_logits(x_all[sel], extra_all[sel], masks[sel], f)
        self._fit_calibration(oof_logits, masks, y[rows])

        # Uncertainty: Σ_R over held-out queries, then its scale.
        cov_rows = np.arange(n)
        if n > self.n_cov_rows:
            cov_rows = np.sort(rng.choice(n, self.n_cov_rows, replace=False))
        self._held_out = (
            cov_rows,
            oof_ante[cov_rows],
            {key: v[cov_rows] for key, v in std.items()},
            a.agree[cov_rows],
            folds[cov_rows],
            y[cov_rows],
        )
        self._fit_covariances()
        if self.uncertainty_scale == "fit":
            self.scale_, self.scale_loss_ = self._fit_scale(rng)
        else:
            self.scale_ = float(self.uncertainty_scale)
            self.scale_loss_ = {}
        self._finish_covariances()
        del self._held_out
        logger.info(
            "LearnedQuality fitted: %d queries, %d models, %d augmented rows, %d features, "
            "%d run-sets, scale %.4g",
            n,
            k,
            rows.size,
            n_feat,
            len(self.runset_index_),
            self.scale_,
        )
        return self

    def _nested_ante(
        self,
        x: Any,
        y: NDArray[np.float64],
        folds: NDArray[np.int64],
        g: int,
        oof: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """Ex-ante scores for fold model ``g``: rows of fold ``h != g`` from a stage-1 model
        fitted on the folds other than ``g`` and ``h``; rows of fold ``g`` keep ``oof``."""
        out = oof.copy()
        for h in range(self.n_folds):
            if h == g:
                continue
            tr = (folds != g) & (folds != h)
            te = folds == h
            coef, icpt = self._fit_ante(x[tr], y[tr], self.alpha_ante_)
            out[te] = np.asarray(x[te] @ coef) + icpt
        return out

    def _training_runsets(
        self, n: int, k: int, rng: np.random.Generator
    ) -> list[tuple[NDArray[np.int64], NDArray[np.bool_]]]:
        out = []
        all_rows = np.arange(n)
        for depth in range(k + 1):
            mask = np.zeros((n, k), dtype=bool)
            mask[:, self.order_[:depth]] = True
            out.append((all_rows, mask))
        if k > 1:
            # Every single model alone: the run-set of every first post-hoc decision, which the
            # prefixes cover for the cheapest model only.
            for j in self.order_[1:]:
                mask = np.zeros((n, k), dtype=bool)
                mask[:, j] = True
                out.append((all_rows, mask))
        if self.n_random_runsets and k > 1:
            reps = self.n_random_runsets
            sizes = rng.integers(1, k, size=(n, reps))
            keys = rng.random((n, reps, k))
            ranks = np.argsort(np.argsort(keys, axis=2), axis=2)
            mask = ranks < sizes[:, :, None]
            out.append((np.repeat(all_rows, reps), mask.reshape(n * reps, k)))
        return out

    def _fit_calibration(
        self, logits: NDArray[np.float64], ran: NDArray[np.bool_], y: NDArray[np.float64]
    ) -> None:
        k = logits.shape[1]
        self.platt_ = np.zeros((k, 2, 2))
        self.platt_[:, :, 0] = 1.0
        self.iso_x_: list[list[NDArray[np.float64]]] = [
            [np.zeros(0), np.zeros(0)] for _ in range(k)
        ]
        self.iso_y_: list[list[NDArray[np.float64]]] = [
            [np.zeros(0), np.zeros(0)] for _ in range(k)
        ]
        if self.calibration == "none":
            return
        for j in range(k):
            for s in (0, 1):
                sel = ran[:, j] == bool(s)
                if sel.sum() < 2:
                    continue
                if self.calibration == "platt":
                    w, b = _logistic(
                        logits[sel, j][:, None], y[sel, j], 1e4, self.seed, dense=True
                    )
                    self.platt_[j, s] = (w[0], b)
                else:
                    from sklearn.isotonic import IsotonicRegression

                    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                    iso.fit(_sigmoid(logits[sel, j]), y[sel, j])
                    self.iso_x_[j][s] = np.asarray(iso.X_thresholds_, dtype=np.float64)
                    self.iso_y_[j][s] = np.asarray(iso.y_thresholds_, dtype=np.float64)

    def _held_out_means(self, ran: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Calibrated out-of-fold means of the held-out rows under run-set masks ``(m, k)``."""
        _, ante, std, agree, folds, _ = self._held_out
        x, extra = self._features(ante, std, agree, ran)
        logits = np.empty(ran.shape)
        for f in range(self.n_folds):
            sel = folds == f
            if sel.any():
                logits[sel] = self._raw_logits(x[sel], extra[sel], ran[sel], f)
        return self._calibrate(logits, ran)

    def _precomputed_runsets(self, k: int) -> list[tuple[int, ...]]:
        depth = k if self.max_depth is None else min(self.max_depth, k)
        sets: list[tuple[int, ...]] = []
        for size in range(depth + 1):
            sets.extend(itertools.combinations(range(k), size))
        return sets

    def _fit_covariances(self) -> None:
        k = len(self.models_)
        m = self._held_out[0].size
        full = self._held_out_means(np.ones((m, k), dtype=bool))
        sets = self._precomputed_runsets(k)
        self.runsets_ = np.zeros((len(sets), k), dtype=bool)
        self.cov_unit_ = np.zeros((len(sets), k, k))
        for s, members in enumerate(sets):
            mask = np.zeros(k, dtype=bool)
            mask[list(members)] = True
            self.runsets_[s] = mask
            if mask.all():
                continue
            diff = self._held_out_means(np.broadcast_to(mask, (m, k)).copy()) - full
            cov = np.atleast_2d(np.cov(diff, rowvar=False)) if m > 1 else np.zeros((k, k))
            self.cov_unit_[s] = (cov + cov.T) / 2
        self._full_held_out = full

    def _fit_scale(self, rng: np.random.Generator) -> tuple[float, dict[float, float]]:
        """The scale of ``Σ`` whose predicted gains best match the realised gains."""
        k = len(self.models_)
        cov_rows, _, _, _, _, y = self._held_out
        m = cov_rows.size
        lo, hi = self.quality_bounds
        candidates = [s for s in range(len(self.runsets_)) if 1 <= self.runsets_[s].sum() < k]
        if not candidates:
            return 1.0, {}
        picked = rng.choice(len(candidates), min(48, len(candidates)), replace=False)
        u = rng.standard_normal((64, k))
        losses = {float(s): 0.0 for s in self.scale_grid}
        count = 0
        for c in picked:
            idx = candidates[int(c)]
            mask = self.runsets_[idx]
            mu = self._held_out_means(np.broadcast_to(mask, (m, k)).copy())
            run = np.flatnonzero(mask)
            sel_r = run[np.argmax(mu[:, run], axis=1)]
            y_r = y[np.arange(m), sel_r]
            chol = _cholesky(self.cov_unit_[idx])
            noise = u @ chol.T  # (S, k)
            grown_gain = []
            for mm in np.flatnonzero(~mask):
                grown = mask.copy()
                grown[mm] = True
                mu2 = self._held_out_means(np.broadcast_to(grown, (m, k)).copy())
                run2 = np.flatnonzero(grown)
                sel2 = run2[np.argmax(mu2[:, run2], axis=1)]
                grown_gain.append((mm, y[np.arange(m), sel2] - y_r))
            for s in self.scale_grid:
                z = np.clip(mu[:, None, :] + math.sqrt(s) * noise[None], lo, hi)
                base = z[:, :, run].max(axis=2)
                for mm, realised in grown_gain:
                    gain = (np.maximum(base, z[:, :, mm]) - base).mean(axis=1)
                    losses[float(s)] += float(((gain - realised) ** 2).sum())
            count += m * len(grown_gain)
        losses = {s: v / max(count, 1) for s, v in losses.items()}
        best = min(losses, key=lambda s: (losses[s], s))
        return best, losses

    def _finish_covariances(self) -> None:
        k = len(self.models_)
        self.cov_ = self.cov_unit_ * self.scale_
        self.chol_ = (
            np.stack([_cholesky(c) for c in self.cov_]) if len(self.cov_) else np.zeros((0, k, k))
        )
        self._build_runset_index()

    def _build_runset_index(self) -> None:
        self.runset_index_ = {m.tobytes(): s for s, m in enumerate(self.runsets_)}

    # ------------------------------------------------------------------ predict

    def _runset_cov(self, ran: NDArray[np.bool_]) -> NDArray[np.float64]:
        s = self.runset_index_.get(ran.tobytes())
        if s is not None:
            return np.asarray(self.cov_[s], dtype=np.float64)
        # Deeper than max_depth: Σ of the first max_depth run models in cost order, with no
        # (co)variance for the other run models.
        depth = self.max_depth or len(ran)
        first = [j for j in self.order_ if ran[j]][:depth]
        mask = np.zeros_like(ran)
        mask[first] = True
        cov = self.cov_[self.runset_index_[mask.tobytes()]].copy()
        rest = ran & ~mask
        cov[rest, :] = 0.0
        cov[:, rest] = 0.0
        return np.asarray(cov, dtype=np.float64)

    def cholesky(self, ran: ArrayLike) -> NDArray[np.float64]:
        """Lower Cholesky factor of the (scaled) ``Σ_R`` of run-set ``ran`` (precomputed)."""
        self._check_fitted()
        mask = np.asarray(ran, dtype=bool)
        if mask.shape != (len(self.models_),):
            raise ValueError(f"ran must be a boolean mask of shape ({len(self.models_)},)")
        s = self.runset_index_.get(mask.tobytes())
        return self.chol_[s] if s is not None else _cholesky(self._runset_cov(mask))

    def uncertainty(self, ran: ArrayLike) -> NDArray[np.float64]:
        """The (scaled) ``Σ_R`` that :meth:`predict` gives every query with run-set ``ran``
        (the prepared decider's run-set protocol, docs/decider.md §2)."""
        self._check_fitted()
        mask = np.asarray(ran, dtype=bool)
        if mask.shape != (len(self.models_),):
            raise ValueError(f"ran must be a boolean mask of shape ({len(self.models_)},)")
        return self._runset_cov(mask)

    def predict_mean(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> NDArray[np.float64]:
        """The calibrated means of :meth:`predict` without the covariances."""
        return self._predict_parts(queries, answers)[0]

    def _predict_parts(
        self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.float64]]:
        """``(calibrated means, ran mask, raw logits)`` of new queries."""
        self._check_fitted()
        q = _parse_queries(queries)
        n, k = len(q.texts), len(self.models_)
        a = self._parse_answers(answers, n, k, full=False)
        ante = self._ante_logits(q)
        x, extra = self._features(ante, self._standardised(a), a.agree, a.ran)
        logits = self._raw_logits(x, extra, a.ran, self.W_.shape[0] - 1)
        return self._calibrate(logits, a.ran), a.ran, logits

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> QualityEstimate:
        """Calibrated probabilities ``(n, k)`` with the covariance ``(n, k, k)`` of the run-set.

        ``answers[i][j]`` is model ``j``'s :class:`ModelAnswer` or ``None`` if it has not run
        (a row may also be a dict model name -> answer).
        """
        mean, ran, _ = self._predict_parts(queries, answers)
        n, k = mean.shape
        cov = np.empty((n, k, k))
        for i in range(n):
            cov[i] = self._runset_cov(ran[i])
        return QualityEstimate(mean, cov=cov)

    def cross_fitted(self) -> CrossFittedQuality:
        """An estimator for the *training* queries (row indices) that never saw their labels.

        Fit a strategy's multipliers on the training logs with it (queries =
        ``range(n_train)``): each row is predicted by the fold models fitted without it, so
        the estimates are as noisy as on new queries. Serve with this estimator itself.
        """
        self._check_fitted()
        if not hasattr(self, "fold_"):
            raise RuntimeError("cross_fitted() needs the fold models of fit (not saved to disk)")
        return CrossFittedQuality(self)

    # ------------------------------------------------------------------ calibration report

    def calibration_report(
        self,
        queries: Sequence[Any],
        answers: Sequence[Sequence[Any]],
        quality: ArrayLike,
        *,
        n_bins: int = 10,
    ) -> dict[str, dict[str, dict[str, float]]]:
        """Brier score and ECE per model on held-out data, before and after calibration.

        For each model ``j`` two situations: ``"ex_ante"`` (nothing has run) and ``"own"``
        (only ``j`` has run: its post-hoc estimate). Keys per situation: ``brier_raw`` /
        ``ece_raw`` (the raw confidence as a probability, ``exp(confidence)`` when it is a
        log-probability; NaN otherwise and ex ante), ``brier_uncalibrated`` /
        ``ece_uncalibrated`` (the logistic model before the calibration map) and
        ``brier_calibrated`` / ``ece_calibrated``.
        """
        self._check_fitted()
        q = _parse_queries(queries)
        n, k = len(q.texts), len(self.models_)
        y = float_array(quality, "quality", 2, shape=(n, k), layout="queries x models")
        full = self._parse_answers(answers, n, k, full=True)
        report: dict[str, dict[str, dict[str, float]]] = {}
        ante = self._ante_logits(q)
        std = self._standardised(full)
        for j, name in enumerate(self.models_):
            report[name] = {}
            for label, own in (("ex_ante", False), ("own", True)):
                ran = np.zeros((n, k), dtype=bool)
                ran[:, j] = own
                x, extra = self._features(ante, std, full.agree, ran)
                logits = self._raw_logits(x, extra, ran, self.W_.shape[0] - 1)
                p_cal = self._calibrate(logits, ran)[:, j]
                p_unc = _sigmoid(logits[:, j])
                conf = full.conf[:, j]
                raw = (
                    np.exp(np.minimum(np.nan_to_num(conf, nan=0.0), 0.0))
                    if own and np.all(conf[np.isfinite(conf)] <= 0)
                    else None
                )
                entry = {
                    "brier_raw": math.nan if raw is None else brier_score(raw, y[:, j]),
                    "ece_raw": math.nan
                    if raw is None
                    else expected_calibration_error(raw, y[:, j], n_bins),
                    "brier_uncalibrated": brier_score(p_unc, y[:, j]),
                    "ece_uncalibrated": expected_calibration_error(p_unc, y[:, j], n_bins),
                    "brier_calibrated": brier_score(p_cal, y[:, j]),
                    "ece_calibrated": expected_calibration_error(p_cal, y[:, j], n_bins),
                }
                report[name][label] = entry
        return report

    # ------------------------------------------------------------------ state (persist.py)

    _HYPER = (
        "n_hash_features",
        "alphas_ante",
        "C_post",
        "n_random_runsets",
        "n_folds",
        "calibration",
        "max_depth",
        "uncertainty_scale",
        "scale_grid",
        "quality_bounds",
        "require_confidence",
        "n_cov_rows",
        "cache_size",
        "seed",
    )
    _ARRAYS = (
        "num_mean_",
        "num_sd_",
        "conf_knots_",
        "conf_cdf_",
        "len_mean_",
        "len_sd_",
        "lp_mean_mean_",
        "lp_mean_sd_",
        "lp_min_mean_",
        "lp_min_sd_",
        "ante_intercept_",
        "platt_",
        "cov_unit_",
        "cov_",
        "chol_",
    )

    def _state(self) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
        """JSON-ready parameters and the arrays of the serving model (no fold models)."""
        self._check_fitted()
        for g in self.groups_:
            if not isinstance(g, (str, int, float)) or isinstance(g, bool):
                raise TypeError(f"cannot save group label {g!r}: use str, int or float groups")
        hyper = {name: getattr(self, name) for name in self._HYPER}
        hyper["scale_grid"] = list(self.scale_grid)
        hyper["alphas_ante"] = list(self.alphas_ante)
        hyper["quality_bounds"] = list(self.quality_bounds)
        params = {
            "hyper": hyper,
            "models": list(self.models_),
            "given_models": None if self.models is None else list(self.models),
            "feature_names": None if self.feature_names_ is None else list(self.feature_names_),
            "n_numeric": self.n_numeric_,
            "groups": list(self.groups_),
            "has_logprobs": self.has_logprobs_,
            "scale": self.scale_,
            "scale_loss": [[s, v] for s, v in self.scale_loss_.items()],
        }
        rows = np.flatnonzero(np.any(self.ante_coef_ != 0.0, axis=1))
        arrays: dict[str, NDArray[Any]] = {name: getattr(self, name) for name in self._ARRAYS}
        g = self.W_.shape[0] - 1
        arrays.update(
            {
                "ante_coef_rows": rows.astype(np.int64),
                "ante_coef_values": self.ante_coef_[rows],
                "ante_coef_n_rows": np.array([self.ante_coef_.shape[0]], dtype=np.int64),
                "W_": self.W_[g:],
                "w_extra_": self.w_extra_[g:],
                "b_": self.b_[g:],
                "order_": self.order_,
                "runsets_": self.runsets_.astype(np.uint8),
            }
        )
        for j in range(len(self.models_)):
            for s in (0, 1):
                arrays[f"iso_x_{j}_{s}"] = self.iso_x_[j][s]
                arrays[f"iso_y_{j}_{s}"] = self.iso_y_[j][s]
        return params, arrays

    @classmethod
    def _from_state(
        cls, params: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]
    ) -> LearnedQuality:
        hyper = dict(params["hyper"])
        hyper["quality_bounds"] = tuple(hyper["quality_bounds"])
        obj = cls(params["given_models"], **hyper)
        obj.models_ = tuple(params["models"])
        k = len(obj.models_)
        names = params["feature_names"]
        obj.feature_names_ = None if names is None else tuple(names)
        obj.n_numeric_ = int(params["n_numeric"])
        obj.groups_ = tuple(params["groups"])
        obj.has_logprobs_ = bool(params["has_logprobs"])
        obj.scale_ = float(params["scale"])
        obj.scale_loss_ = {float(s): float(v) for s, v in params["scale_loss"]}
        for name in cls._ARRAYS:
            setattr(obj, name, np.array(arrays[name], dtype=np.float64))
        n_rows = int(arrays["ante_coef_n_rows"][0])
        rows = np.asarray(arrays["ante_coef_rows"], dtype=np.int64)
        coef = np.zeros((n_rows, k))
        coef[rows] = arrays["ante_coef_values"]
        obj.ante_coef_ = coef
        obj.W_ = np.array(arrays["W_"], dtype=np.float64)
        obj.w_extra_ = np.array(arrays["w_extra_"], dtype=np.float64)
        obj.b_ = np.array(arrays["b_"], dtype=np.float64)
        obj.order_ = np.array(arrays["order_"], dtype=np.int64)
        obj.runsets_ = np.array(arrays["runsets_"], dtype=bool)
        obj.iso_x_ = [
            [np.array(arrays[f"iso_x_{j}_{s}"], dtype=np.float64) for s in (0, 1)]
            for j in range(k)
        ]
        obj.iso_y_ = [
            [np.array(arrays[f"iso_y_{j}_{s}"], dtype=np.float64) for s in (0, 1)]
            for j in range(k)
        ]
        if obj.W_.shape[1:] != (obj.W_.shape[1], k, 2) or obj.cov_.shape[1:] != (k, k):
            raise ValueError("saved LearnedQuality: array shapes do not match its models")
        obj._build_runset_index()
        return obj


class CrossFittedQuality:
    """Out-of-fold estimates for the training queries of a fitted :class:`LearnedQuality`.

    Queries are row indices into the training data given to ``fit``; answers are as for
    :meth:`LearnedQuality.predict`. The covariance is the fitted estimator's.
    """

    def __init__(self, estimator: LearnedQuality) -> None:
        self.estimator = estimator

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> QualityEstimate:
        est = self.estimator
        rows = np.asarray(queries)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise TypeError("CrossFittedQuality takes training row indices (ints) as queries")
        n_train = est.fold_.size
        if rows.size and (rows.min() < 0 or rows.max() >= n_train):
            raise ValueError(f"queries: training row index out of range 0..{n_train - 1}")
        n, k = rows.size, len(est.models_)
        a = est._parse_answers(answers, n, k, full=False)
        x, extra = est._features(est.oof_ante_[rows], est._standardised(a), a.agree, a.ran)
        logits = np.empty((n, k))
        folds = est.fold_[rows]
        for f in range(est.n_folds):
            sel = folds == f
            if sel.any():
                logits[sel] = est._raw_logits(x[sel], extra[sel], a.ran[sel], f)
        mean = est._calibrate(logits, a.ran)
        cov = np.empty((n, k, k))
        for i in range(n):
            cov[i] = est._runset_cov(a.ran[i])
        return QualityEstimate(mean, cov=cov)


# --------------------------------------------------------------------------- helpers


def _all_real(values: Any) -> bool:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):
        return False
    return arr.dtype.kind in "fiub" or (
        arr.dtype == object and all(isinstance(v, (int, float, np.number)) for v in arr.ravel())
    )


_TRIU: dict[int, tuple[NDArray[np.intp], NDArray[np.intp]]] = {}


def _triu(k: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """``np.triu_indices(k, 1)``, cached (it costs more than the rest of a feature row)."""
    out = _TRIU.get(k)
    if out is None:
        out = _TRIU[k] = np.triu_indices(k, 1)
    return out


def _cholesky(cov: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lower factor of a PSD matrix (eigenvalues clipped at 0, a tiny jitter added)."""
    k = cov.shape[0]
    sym = (cov + cov.T) / 2
    vals, vecs = np.linalg.eigh(sym)
    fixed = (vecs * np.clip(vals, 0.0, None)) @ vecs.T
    jitter = 1e-12 * max(1.0, float(np.trace(fixed)) / max(k, 1))
    return np.linalg.cholesky(fixed + jitter * np.eye(k))


def _logistic(
    x: Any,
    y: NDArray[np.float64],
    C: float,
    seed: int,
    *,
    dense: bool = False,
    weight: NDArray[np.float64] | None = None,
    start: tuple[NDArray[np.float64], float] | None = None,
) -> tuple[NDArray[np.float64], float]:
    """Weights and intercept of an L2 logistic regression on labels in ``[0, 1]``.

    Fractional labels are fitted as two weighted copies of each row (label 1 with weight
    ``y``, label 0 with weight ``1 − y``), times the row's ``weight``. A single class gives
    zero weights and the logit of the (clipped) mean. ``start`` (weights and intercept on
    the unstandardised columns, e.g. a model of overlapping data) is where the solver starts:
    the optimum is the same, reached in fewer Newton steps.
    """
    from sklearn.linear_model import LogisticRegression

    d = x.shape[1]
    if y.size == 0:
        return np.zeros(d), 0.0
    mean = float(y.mean())
    if mean <= 0.0 or mean >= 1.0:
        return np.zeros(d), float(_logit(np.array([mean]))[0])
    binary = bool(np.all((y == 0.0) | (y == 1.0)))
    mu = sd = None
    if dense:
        # Standardise the columns (lbfgs converges in far fewer steps), fold back afterwards.
        x = np.asarray(x, dtype=np.float64)
        mu = x.mean(axis=0)
        sd = x.std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        x = (x - mu) / sd
    solver = "newton-cholesky" if dense else "lbfgs"
    model = LogisticRegression(C=C, max_iter=300, tol=1e-6, solver=solver, random_state=seed)
    if start is not None and np.all(np.isfinite(start[0])) and math.isfinite(start[1]):
        w0, b0 = np.asarray(start[0], dtype=np.float64), float(start[1])
        if mu is not None and sd is not None:  # into the standardised columns
            b0 += float(w0 @ mu)
            w0 = w0 * sd
        model.set_params(warm_start=True)
        model.coef_, model.intercept_ = w0[None, :], np.array([b0])
    if binary:
        model.fit(x, y.astype(np.int64), sample_weight=weight)
    else:
        wt = np.ones(y.size) if weight is None else weight
        if dense:
            xx = np.vstack([x, x])
        else:
            from scipy import sparse

            xx = sparse.vstack([x, x], format="csr")
        yy = np.concatenate([np.ones(y.size, dtype=np.int64), np.zeros(y.size, dtype=np.int64)])
        model.fit(xx, yy, sample_weight=np.concatenate([wt * y, wt * (1.0 - y)]))
    w = np.asarray(model.coef_[0], dtype=np.float64)
    b = float(model.intercept_[0])
    if mu is not None and sd is not None:
        w = w / sd
        b -= float(w @ mu)
    return w, b
