"""Evaluation with the learned estimators of :mod:`cascade_routing.learn` (docs/estimators.md §10).

For each random split (one per seed): fit :class:`~cascade_routing.learn.LearnedQuality` on
the training rows (query text, each model's answer with its confidence or score, the true
quality) and a cost model (:class:`~cascade_routing.learn.PriceTableCost` where the data has
a price table and token counts, else the observed cost per prompt character of the training
rows); fit every strategy at every budget on the training rows with the *cross-fitted*
estimates (each training row predicted by fold models that never saw it, so the multipliers
are fitted on estimates as noisy as on new queries); replay on the test rows with the fitted
estimator. Every strategy gets the same estimators, and each (query, run-set) is predicted
once per split, however many strategies and budgets replay it (:class:`LearnedRowQuality`).

:func:`learned_inputs` says what a dataset offers the estimator and refuses data with
nothing to read once a model has run; :func:`evaluate_learned` runs one split;
:func:`calibration_plot` draws the reliability diagram of every model.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..answers import ModelAnswer
from ..estimators import QualityEstimate, TwoPhaseCost
from ..learn import LearnedQuality, PriceTableCost
from ..validation import check_rows
from .datasets import Dataset
from .evaluation import Evaluation, build_strategy, evaluate_strategies
from .real_estimators import _ex_ante_cost
from .settings import STRATEGY_LABELS

log = logging.getLogger(__name__)

__all__ = [
    "LEARNED_MAX_MODELS",
    "LearnedInputs",
    "LearnedRowQuality",
    "LearnedSplit",
    "calibration_plot",
    "evaluate_learned",
    "learned_inputs",
]

#: Most models the learned evaluation takes: it precomputes a covariance per run-set (2^k).
LEARNED_MAX_MODELS = 12


@dataclass(frozen=True)
class LearnedInputs:
    """What the learned estimator reads for every row of a dataset.

    ``queries[r]`` is row ``r``'s query (``text``, ``group``, numeric ``features``,
    ``input_tokens``), ``answers[r][j]`` model ``j``'s :class:`ModelAnswer` (text, parsed
    answer, confidence or score, observed cost). ``reads`` names what the estimator gets,
    ``lacks`` what the data does not have, for the report.
    """

    queries: list[dict[str, Any]]
    answers: list[list[ModelAnswer]]
    reads: tuple[str, ...]
    lacks: tuple[str, ...]

    def describe(self) -> str:
        text = "learned estimators reading " + ", ".join(self.reads)
        return text + (f" (the data has no {', no '.join(self.lacks)})" if self.lacks else "")


def learned_inputs(data: Dataset) -> LearnedInputs:
    """Queries and :class:`ModelAnswer` rows for :class:`LearnedQuality` from ``data``.

    Ex ante the estimator reads the query text (``data.texts``), else the prompt length
    (``features["prompt_chars"]``), and the group. Post hoc it reads each answer's confidence
    (``data.confidence``) or, without confidences, the per-answer score
    (``data.answer_scores``, e.g. response length or agent steps, whose direction the model
    learns), plus the parsed answers (agreement) and answer texts (length) where present.

    Raises
    ------
    ValueError
        The data has nothing per answer (no confidence, score or answer text): a learned
        post-hoc estimate would be the ex-ante one, and cascades would have nothing to
        decide on. The message names what is missing.
    """
    n, k = data.n_queries, data.n_models
    has_answers = data.answer_texts is not None or data.parsed_answers is not None
    if data.confidence is None and data.answer_scores is None and not has_answers:
        raise ValueError(
            f"dataset {data.name!r} has nothing the learned estimators can read once a model "
            "has run: no confidences, no per-answer scores (e.g. response_chars.csv, "
            "api_calls.csv) and no answer texts (answers_<benchmark>.csv); use --estimators "
            "tables"
        )
    reads: list[str] = []
    lacks: list[str] = []
    chars = data.features.get("prompt_chars")
    if data.texts is not None:
        reads.append("query texts")
    else:
        lacks.append("query texts")
        if chars is not None:
            reads.append("prompt lengths")
    if data.groups is not None and len(set(data.groups.tolist())) > 1:
        reads.append("groups")
    if data.confidence is not None:
        scores, score_name = data.confidence, "confidences"
    elif data.answer_scores is not None:
        scores, score_name = data.answer_scores, data.answer_score_name
    else:
        scores, score_name = None, ""
        lacks.append("confidences or per-answer scores")
    if score_name:
        reads.append(score_name)
    if data.parsed_answers is not None:
        reads.append("agreement of parsed answers")
    else:
        lacks.append("answers to compare")
    if data.answer_texts is not None:
        reads.append("answer lengths")
    queries: list[dict[str, Any]] = []
    for i in range(n):
        q: dict[str, Any] = {"text": "" if data.texts is None else str(data.texts[i])}
        if data.groups is not None:
            q["group"] = str(data.groups[i])
        if data.texts is None and chars is not None:
            q["features"] = {"log_prompt_chars": math.log1p(float(chars[i]))}
        if data.input_tokens is not None:
            q["input_tokens"] = {
                m: float(data.input_tokens[i, j]) for j, m in enumerate(data.models)
            }
        queries.append(q)
    answers = [
        [
            ModelAnswer(
                text="" if data.answer_texts is None else str(data.answer_texts[i, j]),
                parsed=None if data.parsed_answers is None else data.parsed_answers[i, j],
                confidence=None if scores is None else float(scores[i, j]),
                cost=float(data.cost[i, j]),
            )
            for j in range(k)
        ]
        for i in range(n)
    ]
    return LearnedInputs(queries, answers, tuple(reads), tuple(lacks))


class LearnedRowQuality:
    """A fitted :class:`LearnedQuality` for the rows of a dataset, memoised per run-set.

    Queries are row indices of the dataset. A training row is predicted out of fold
    (:meth:`LearnedQuality.cross_fitted`: by fold models that never saw its label); any other
    row by the fitted estimator from its query and the answers of the models that have run.
    Each (row, run-set) is predicted once: the strategies and budgets replaying the same
    rows reuse it. The covariance depends on the run-set only and is stored once per run-set.
    """

    def __init__(
        self, estimator: LearnedQuality, queries: Sequence[Any], train_rows: NDArray[np.int64]
    ) -> None:
        self.estimator = estimator
        self.cross_fitted = estimator.cross_fitted()
        self.queries = list(queries)
        self.train_pos = np.full(len(self.queries), -1, dtype=np.int64)
        self.train_pos[train_rows] = np.arange(train_rows.size)
        self.means: dict[tuple[int, bytes], NDArray[np.float64]] = {}
        self.covs: dict[bytes, NDArray[np.float64]] = {}
        self.calls = 0  # predict calls on the wrapped estimators (for tests and logs)

    def predict(self, queries: Sequence[Any], answers: Sequence[Sequence[Any]]) -> QualityEstimate:
        rows = check_rows(queries, len(self.queries), "queries (row indices)")
        ran = np.array([[a is not None for a in row] for row in answers], dtype=bool)
        keys = [(int(r), ran[i].tobytes()) for i, r in enumerate(rows)]
        miss = [i for i, key in enumerate(keys) if key not in self.means]
        for in_train in (True, False):
            part = [i for i in miss if (self.train_pos[rows[i]] >= 0) == in_train]
            if not part:
                continue
            sub = [answers[i] for i in part]
            if in_train:
                est = self.cross_fitted.predict(self.train_pos[rows[part]].tolist(), sub)
            else:
                est = self.estimator.predict([self.queries[rows[i]] for i in part], sub)
            self.calls += 1
            assert est.cov is not None
            for pos, i in enumerate(part):
                self.means[keys[i]] = est.mean[pos]
                self.covs.setdefault(keys[i][1], est.cov[pos])
        mean = np.stack([self.means[key] for key in keys])
        cov = np.stack([self.covs[key[1]] for key in keys])
        return QualityEstimate(mean, cov=cov)


@dataclass
class LearnedSplit:
    """One split of the learned evaluation: the curves, the calibration and its data.

    ``calibration`` is :meth:`LearnedQuality.calibration_report` on the test rows.
    ``reliability[model]`` holds the test rows' outcome, the raw confidence read as a
    probability (``exp`` of a log-probability; NaN when the scores are not
    log-probabilities), the estimate when only that model has run and the ex-ante estimate.
    """

    evaluation: Evaluation
    calibration: dict[str, dict[str, dict[str, float]]]
    reliability: dict[str, dict[str, NDArray[np.float64]]] = field(repr=False)
    fit_seconds: float
    scale: float

    def to_dict(self) -> dict[str, Any]:
        out = self.evaluation.to_dict()
        out["calibration"] = self.calibration
        out["estimator_fit_seconds"] = self.fit_seconds
        out["uncertainty_scale"] = self.scale
        return out


def _cost_tables(
    data: Dataset, inputs: LearnedInputs, train: NDArray[np.int64]
) -> tuple[TwoPhaseCost, str]:
    """Ex-ante cost of every row (fitted on training rows) and the observed cost post hoc."""
    if data.prices is not None and data.input_tokens is not None:
        cost = PriceTableCost(data.models, data.prices).fit(
            [inputs.queries[r] for r in train], [inputs.answers[r] for r in train]
        )
        ante = cost.predict_ex_ante(inputs.queries)
        label = "price-table cost"
    else:
        ante = _ex_ante_cost(data, train, True)
        label = "cost per prompt character" if "prompt_chars" in data.features else "mean cost"
    return TwoPhaseCost(ante, data.cost), label


def evaluate_learned(
    data: Dataset,
    train_rows: NDArray[np.int64],
    test_rows: NDArray[np.int64],
    *,
    inputs: LearnedInputs | None = None,
    strategies: Sequence[str] = tuple(STRATEGY_LABELS),
    per_segment: int = 10,
    max_depth: int | None = 5,
    lambdas: str = "constant",
    n_trials: int = 200,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_threads: int = 1,
    quality_bounds: tuple[float, float] = (0.0, 1.0),
    estimator_options: dict[str, Any] | None = None,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LearnedSplit:
    """Fit the learned estimators on ``train_rows``, every strategy on them, replay on test.

    Parameters
    ----------
    data : Dataset
        Outcomes and what the estimator reads (see :func:`learned_inputs`).
    train_rows, test_rows : array of int
        Disjoint rows of ``data``; only the training rows' outcomes are used for fitting.
    inputs : LearnedInputs, optional
        ``learned_inputs(data)``, when already built (it is the same for every split).
    quality_bounds : (float, float)
        Bounds of the quality samples, for the strategies and for the estimator's fit of its
        uncertainty scale alike (the estimates are probabilities).
    estimator_options : dict, optional
        More settings of :class:`LearnedQuality` (e.g. ``{"n_folds": 3}``).

    Other parameters are those of :func:`~.evaluation.evaluate`; ``seed`` also seeds the
    estimator's folds and random run-sets.
    """
    started = time.perf_counter()
    if data.n_models > LEARNED_MAX_MODELS:
        raise ValueError(
            f"{data.n_models} models: the learned evaluation takes at most "
            f"{LEARNED_MAX_MODELS} (it precomputes a covariance per run-set); choose fewer"
        )
    train = check_rows(train_rows, data.n_queries, "train_rows", unique=True)
    test = check_rows(test_rows, data.n_queries, "test_rows", unique=True)
    if train.size < 10 or test.size == 0:
        raise ValueError("the learned evaluation needs at least 10 training rows and 1 test row")
    if np.intersect1d(train, test).size:
        raise ValueError("train_rows and test_rows overlap: the test rows must be held out")
    # Models in ascending mean training cost: the order of cascades (docs/algorithm.md §1).
    perm = np.argsort(data.cost[train].mean(axis=0), kind="stable")
    data = data.select_models([data.models[i] for i in perm])
    if inputs is None:
        inputs = learned_inputs(data)
    else:
        inputs = LearnedInputs(
            inputs.queries,
            [[row[i] for i in perm] for row in inputs.answers],
            inputs.reads,
            inputs.lacks,
        )
    options = {"seed": seed, "quality_bounds": quality_bounds, **(estimator_options or {})}
    t0 = time.perf_counter()
    quality = LearnedQuality(data.models, **options).fit(
        [inputs.queries[r] for r in train],
        [inputs.answers[r] for r in train],
        data.quality[train],
    )
    fit_s = time.perf_counter() - t0
    log.info("learned quality fitted on %d rows in %.1f s", train.size, fit_s)
    row_quality = LearnedRowQuality(quality, inputs.queries, train)
    row_cost, cost_label = _cost_tables(data, inputs, train)
    ev = evaluate_strategies(
        data,
        lambda key: build_strategy(
            key,
            row_quality,
            row_cost,
            data.models,
            max_depth=max_depth,
            seed=seed,
            quality_bounds=quality_bounds,
        ),
        train,
        test,
        inputs.answers,
        strategies=strategies,
        per_segment=per_segment,
        max_depth=max_depth,
        lambdas=lambdas,
        n_trials=n_trials,
        n_boot=n_boot,
        alpha=alpha,
        seed=seed,
        n_threads=n_threads,
        name=name or data.name,
        progress=progress,
        quality_bounds=quality_bounds,
        started=started,
    )
    ev.settings.update(
        estimators="learned", cost_model=cost_label, reads=list(inputs.reads), split_seed=seed
    )
    q_test = [inputs.queries[r] for r in test]
    a_test = [inputs.answers[r] for r in test]
    y_test = data.quality[test]
    report = quality.calibration_report(q_test, a_test, y_test)
    reliability = _reliability(quality, data, inputs, test)
    log.info("split %d: %d estimator calls, %.1f s", seed, row_quality.calls, ev.seconds)
    return LearnedSplit(ev, report, reliability, fit_s, float(quality.scale_))


def _reliability(
    quality: LearnedQuality, data: Dataset, inputs: LearnedInputs, test: NDArray[np.int64]
) -> dict[str, dict[str, NDArray[np.float64]]]:
    k = data.n_models
    q_test = [inputs.queries[r] for r in test]
    ante = quality.predict(q_test, [[None] * k for _ in test]).mean
    conf = None if data.confidence is None else data.confidence[test]
    raw_is_prob = conf is not None and bool(np.all(conf[np.isfinite(conf)] <= 0))
    out: dict[str, dict[str, NDArray[np.float64]]] = {}
    for j, m in enumerate(data.models):
        own = [[a if c == j else None for c, a in enumerate(inputs.answers[r])] for r in test]
        post = quality.predict(q_test, own).mean[:, j]
        raw = (
            np.exp(conf[:, j]) if raw_is_prob and conf is not None else np.full(test.size, np.nan)
        )
        out[m] = {
            "outcome": data.quality[test, j].copy(),
            "raw": raw,
            "own": post,
            "ex_ante": ante[:, j].copy(),
        }
    return out


def _binned(
    prob: NDArray[np.float64], outcome: NDArray[np.float64], n_bins: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean prediction and mean outcome of each non-empty equal-width bin."""
    ok = np.isfinite(prob)
    prob, outcome = prob[ok], outcome[ok]
    idx = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    xs, ys = [], []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            xs.append(prob[sel].mean())
            ys.append(outcome[sel].mean())
    return np.asarray(xs), np.asarray(ys)


def calibration_plot(
    splits: Sequence[LearnedSplit], path: str | Path, *, title: str = "", n_bins: int = 10
) -> None:
    """Reliability diagram per model, pooled over the splits' test rows: the raw confidence
    read as a probability (before calibration, when the confidences are log-probabilities),
    the calibrated estimate once the model has run (after) and the ex-ante estimate. The
    legend gives the Brier score and the ECE (mean over splits)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(splits[0].reliability)
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel()[len(models) :]:
        ax.axis("off")
    for ax, m in zip(axes.ravel(), models):
        pooled = {
            key: np.concatenate([s.reliability[m][key] for s in splits])
            for key in ("outcome", "raw", "own", "ex_ante")
        }

        def score(situation: str, kind: str, m: str = m) -> str:
            entries = [s.calibration[m][situation] for s in splits]
            brier = np.mean([e[f"brier_{kind}"] for e in entries])
            ece = np.mean([e[f"ece_{kind}"] for e in entries])
            return f"Brier {brier:.3f}, ECE {ece:.3f}"

        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
        if np.isfinite(pooled["raw"]).any():
            x, y = _binned(pooled["raw"], pooled["outcome"], n_bins)
            ax.plot(x, y, "o-", ms=3, lw=1, label=f"raw confidence ({score('own', 'raw')})")
        x, y = _binned(pooled["own"], pooled["outcome"], n_bins)
        ax.plot(x, y, "s-", ms=3, lw=1.2, label=f"calibrated ({score('own', 'calibrated')})")
        x, y = _binned(pooled["ex_ante"], pooled["outcome"], n_bins)
        ax.plot(x, y, "^--", ms=3, lw=0.8, label=f"ex ante ({score('ex_ante', 'calibrated')})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(m.split("/")[-1][:32], fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left")
    fig.supxlabel("predicted probability of a correct answer", fontsize=8)
    fig.supylabel("observed frequency (test rows)", fontsize=8)
    fig.suptitle(title or "reliability of the learned quality estimates", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
