"""The :class:`Dataset` container: per-query × per-model outcome tables.

A :class:`Dataset` holds, for ``n`` queries and ``k`` models, the true quality of every model's
answer (``quality``, in ``[0, 1]``) and what the call cost (``cost``, ``>= 0``), plus optional raw
confidences, a group label per query and per-query features known before any model runs. Row
``i`` of every table is query ``i``, so the row indices are the queries the table-backed
estimators of :mod:`cascade_routing.estimators` take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ...validation import (
    UnknownModelError,
    check_int,
    check_number,
    check_rows,
    check_seed,
)
from ...validation import float_array as finite_array

__all__ = ["Dataset", "check_cost", "check_quality"]


def _frozen(arr: NDArray[Any]) -> NDArray[Any]:
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Dataset:
    """True per-query × per-model outcomes of ``k`` models on ``n`` queries.

    All arrays are copies, made read-only.

    Attributes
    ----------
    name : str
        Short name (e.g. ``"routerbench"``).
    models : tuple of str
        Model names, one per column of the tables.
    quality : ndarray, shape (n, k), float64
        True quality of each model's answer, in ``[0, 1]`` (1 = correct).
    cost : ndarray, shape (n, k), float64
        Cost of running each model on each query, ``>= 0`` (US dollars unless
        ``cost_is_estimate``; see ``source``).
    confidence : ndarray, shape (n, k), float64, or None
        Raw, uncalibrated confidences where the source has them (log-probabilities for the
        ``llm_cascades`` data). May contain ``-inf`` (the source could not extract a Y/N
        confidence); it is kept as-is, never replaced or dropped, and estimators must handle it
        (see :func:`cascade_routing.experiments.real_estimators.confidence_estimates`).
        NaN and ``+inf`` are not allowed.
    groups : ndarray, shape (n,), of str, or None
        A group label per query: the benchmark / ``eval_name`` / repository.
    query_ids : ndarray, shape (n,)
        The source's identifier of each query (unique).
    features : dict of str to ndarray, shape (n,)
        Per-query information known before any model runs (e.g. ``"prompt_chars"``).
    n_dropped : int
        Queries dropped on loading because a selected model had a missing value.
    cost_is_estimate : bool
        True when ``cost`` is not a measured cost but an estimate (e.g. from output length).
    source : str
        Origin and licence of the data.
    layout : str
        The folder layout the data was read from (a key of
        :data:`~cascade_routing.experiments.datasets.LAYOUTS`); empty when built in code.
    group_priors : bool
        True when ``groups`` are informative priors of each model's quality (SWE-bench
        repositories) and the quality is observed once a model has run; see
        :attr:`estimator_kind`.
    texts : ndarray, shape (n,), of str, or None
        The query (prompt) text sent to every model, where the source has it. The learned
        estimators read it ex ante (:mod:`cascade_routing.experiments.learned_evaluation`).
    answer_texts : ndarray, shape (n, k), of str, or None
        Each model's answer text, where the source has it.
    parsed_answers : ndarray, shape (n, k), of object, or None
        Each model's answer as compared between models (a letter, a number, a normalised
        string; ``None`` where nothing could be parsed), where the source has answers.
    answer_scores : ndarray, shape (n, k), float64, or None
        A per-answer number known once a model has run, other than a confidence (e.g. the
        length of the response, minus the number of agent steps); see ``answer_score_name``.
    answer_score_name : str
        What ``answer_scores`` holds (empty when there are none).
    input_tokens : ndarray, shape (n, k), float64, or None
        Input tokens of each model's call, where the source has them.
    prices : dict of str to (float, float), or None
        Price per input and per output token of each model (the unit of ``cost``), where the
        source documents a price table.
    """

    name: str
    models: tuple[str, ...]
    quality: NDArray[np.float64]
    cost: NDArray[np.float64]
    confidence: NDArray[np.float64] | None = None
    groups: NDArray[Any] | None = None
    query_ids: NDArray[Any] | None = None
    features: dict[str, NDArray[Any]] = field(default_factory=dict)
    n_dropped: int = 0
    cost_is_estimate: bool = False
    source: str = ""
    layout: str = ""
    group_priors: bool = False
    texts: NDArray[Any] | None = None
    answer_texts: NDArray[Any] | None = None
    parsed_answers: NDArray[Any] | None = None
    answer_scores: NDArray[np.float64] | None = None
    answer_score_name: str = ""
    input_tokens: NDArray[np.float64] | None = None
    prices: dict[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        models = tuple(str(m) for m in self.models)
        if len(set(models)) != len(models):
            raise ValueError(f"model names must be unique, got {list(models)}")
        check_int(self.n_dropped, "n_dropped", 0)
        quality = _numeric_table(self.quality, "quality")
        n, k = quality.shape
        if k != len(models):
            raise ValueError(f"quality has {k} columns but {len(models)} model names were given")
        cost = _numeric_table(self.cost, "cost")
        if cost.shape != (n, k):
            raise ValueError(f"cost must have shape {(n, k)} like quality, got {cost.shape}")
        check_quality(quality, models, "quality")
        check_cost(cost, models, "cost")
        confidence = None
        if self.confidence is not None:
            confidence = _numeric_table(self.confidence, "confidence", allow_neg_inf=True)
            if confidence.shape != (n, k):
                raise ValueError(
                    f"confidence must have shape {(n, k)} like quality, got {confidence.shape}"
                )
        groups = None
        if self.groups is not None:
            groups = np.array(self.groups, dtype=object).astype(str)
            if groups.shape != (n,):
                raise ValueError(f"groups must have shape {(n,)}, got {groups.shape}")
        if self.query_ids is None:
            query_ids = np.arange(n)
        else:
            query_ids = np.array(self.query_ids)
            if query_ids.shape != (n,):
                raise ValueError(f"query_ids must have shape {(n,)}, got {query_ids.shape}")
            if len(pd.unique(query_ids)) != n:
                raise ValueError("query_ids must be unique")
        features: dict[str, NDArray[Any]] = {}
        for key, value in dict(self.features).items():
            arr = np.array(value)
            if arr.shape != (n,):
                raise ValueError(f"feature {key!r} must have shape {(n,)}, got {arr.shape}")
            features[str(key)] = _frozen(arr)
        texts = None
        if self.texts is not None:
            texts = np.array(self.texts, dtype=object)
            if texts.shape != (n,) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"texts must be {n} strings, one per query")
        answer_texts = parsed = None
        if self.answer_texts is not None:
            answer_texts = np.array(self.answer_texts, dtype=object)
            if answer_texts.shape != (n, k) or not all(
                isinstance(t, str) for t in answer_texts.ravel()
            ):
                raise ValueError(f"answer_texts must be strings of shape {(n, k)} like quality")
        if self.parsed_answers is not None:
            parsed = np.empty((n, k), dtype=object)
            given = np.asarray(self.parsed_answers, dtype=object)
            if given.shape != (n, k):
                raise ValueError(f"parsed_answers must have shape {(n, k)}, got {given.shape}")
            parsed[:] = given
        scores = None
        if self.answer_scores is not None:
            scores = _numeric_table(self.answer_scores, "answer_scores")
            if scores.shape != (n, k):
                raise ValueError(f"answer_scores must have shape {(n, k)}, got {scores.shape}")
            if not self.answer_score_name:
                raise ValueError("answer_scores needs answer_score_name (what the scores are)")
        tokens = None
        if self.input_tokens is not None:
            tokens = _numeric_table(self.input_tokens, "input_tokens")
            if tokens.shape != (n, k) or np.any(tokens < 0):
                raise ValueError(f"input_tokens must be >= 0 with shape {(n, k)}")
        prices = None
        if self.prices is not None:
            prices = {str(m): (float(p[0]), float(p[1])) for m, p in self.prices.items()}
            missing = [m for m in models if m not in prices]
            if missing:
                raise ValueError(f"prices lacks models {missing}")
        set_ = object.__setattr__
        set_(self, "texts", None if texts is None else _frozen(texts))
        set_(self, "answer_texts", None if answer_texts is None else _frozen(answer_texts))
        set_(self, "parsed_answers", None if parsed is None else _frozen(parsed))
        set_(self, "answer_scores", None if scores is None else _frozen(scores))
        set_(self, "input_tokens", None if tokens is None else _frozen(tokens))
        set_(self, "prices", prices)
        set_(self, "models", models)
        set_(self, "quality", _frozen(quality))
        set_(self, "cost", _frozen(cost))
        set_(self, "confidence", None if confidence is None else _frozen(confidence))
        set_(self, "groups", None if groups is None else _frozen(groups))
        set_(self, "query_ids", _frozen(query_ids))
        set_(self, "features", features)
        set_(self, "n_dropped", int(self.n_dropped))
        set_(self, "cost_is_estimate", bool(self.cost_is_estimate))
        set_(self, "group_priors", bool(self.group_priors))
        if self.group_priors and groups is None:
            raise ValueError("group_priors=True needs groups (one label per query)")

    # ------------------------------------------------------------------ shape

    @property
    def n_queries(self) -> int:
        """Number of queries (rows)."""
        return int(self.quality.shape[0])

    @property
    def n_models(self) -> int:
        """Number of models (columns)."""
        return int(self.quality.shape[1])

    def __len__(self) -> int:
        return self.n_queries

    def __repr__(self) -> str:
        est = ", cost estimated" if self.cost_is_estimate else ""
        conf = ", with confidences" if self.confidence is not None else ""
        return (
            f"Dataset({self.name!r}: {self.n_queries} queries x {self.n_models} models"
            f"{conf}{est}, {self.n_dropped} dropped)"
        )

    @property
    def estimator_kind(self) -> str:
        """What estimators can be built from this data, by what it declares it has.

        ``"confidence"``: raw per-model confidences (:attr:`confidence`);
        ``"group_priors"``: group labels that are priors, with the outcome observed post hoc
        (:attr:`group_priors`); ``"simulated"``: neither, so the paper's simulated estimators.
        """
        if self.confidence is not None:
            return "confidence"
        if self.group_priors:
            return "group_priors"
        return "simulated"

    # ------------------------------------------------------------------ views

    def subset(self, rows: ArrayLike) -> Dataset:
        """The dataset restricted to ``rows`` (integer indices, in the order given, or a mask)."""
        idx = check_rows(rows, self.n_queries, "rows")
        return replace(
            self,
            quality=self.quality[idx],
            cost=self.cost[idx],
            confidence=None if self.confidence is None else self.confidence[idx],
            groups=None if self.groups is None else self.groups[idx],
            query_ids=self.query_ids[idx] if self.query_ids is not None else None,
            features={key: value[idx] for key, value in self.features.items()},
            texts=None if self.texts is None else self.texts[idx],
            answer_texts=None if self.answer_texts is None else self.answer_texts[idx],
            parsed_answers=None if self.parsed_answers is None else self.parsed_answers[idx],
            answer_scores=None if self.answer_scores is None else self.answer_scores[idx],
            input_tokens=None if self.input_tokens is None else self.input_tokens[idx],
        )

    def select_models(self, names: Sequence[str]) -> Dataset:
        """The dataset with only the models ``names``, in the order given."""
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise ValueError("names must name at least one model")
        if len(set(names)) != len(names):
            raise ValueError(f"model names must not repeat, got {names}")
        missing = [m for m in names if m not in self.models]
        if missing:
            raise UnknownModelError(
                f"unknown models {missing}; this dataset has {list(self.models)}"
            )
        cols = [self.models.index(m) for m in names]
        return replace(
            self,
            models=tuple(names),
            quality=self.quality[:, cols],
            cost=self.cost[:, cols],
            confidence=None if self.confidence is None else self.confidence[:, cols],
            answer_texts=None if self.answer_texts is None else self.answer_texts[:, cols],
            parsed_answers=None if self.parsed_answers is None else self.parsed_answers[:, cols],
            answer_scores=None if self.answer_scores is None else self.answer_scores[:, cols],
            input_tokens=None if self.input_tokens is None else self.input_tokens[:, cols],
            prices=None if self.prices is None else {m: self.prices[m] for m in names},
        )

    def split_rows(
        self, test_size: float = 0.5, seed: int = 0
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Row indices ``(train, test)``: ``sklearn.model_selection.train_test_split`` of
        ``range(n_queries)`` with ``random_state=seed`` (shuffled, deterministic under the
        seed)."""
        from sklearn.model_selection import train_test_split

        if self.n_queries < 2:
            raise ValueError("a split needs at least 2 queries")
        check_number(test_size, "test_size", 0.0, 1.0)
        check_seed(seed)
        train, test = train_test_split(
            np.arange(self.n_queries), test_size=test_size, random_state=seed
        )
        return np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)

    def split(self, test_size: float = 0.5, seed: int = 0) -> tuple[Dataset, Dataset]:
        """``(train, test)`` datasets from :meth:`split_rows` (same rows for the same seed)."""
        train, test = self.split_rows(test_size, seed)
        return self.subset(train), self.subset(test)

    def mean_quality(self) -> NDArray[np.float64]:
        """Mean quality of each model (``(k,)``)."""
        return np.asarray(self.quality.mean(axis=0), dtype=np.float64)

    def mean_cost(self) -> NDArray[np.float64]:
        """Mean cost of each model (``(k,)``)."""
        return np.asarray(self.cost.mean(axis=0), dtype=np.float64)


# --------------------------------------------------------------------------- validation


def _numeric_table(value: Any, name: str, allow_neg_inf: bool = False) -> NDArray[np.float64]:
    return finite_array(
        value,
        name,
        2,
        layout="queries x models",
        allow_neg_inf=allow_neg_inf,
        hint="drop or fill those rows first",
    ).copy()


def check_quality(quality: NDArray[np.float64], models: Sequence[str], where: str) -> None:
    """``ValueError`` naming the models whose quality leaves ``[0, 1]``."""
    bad = (quality < 0) | (quality > 1)
    if np.any(bad):
        cols = sorted({models[int(j)] for j in np.flatnonzero(bad.any(axis=0))})
        raise ValueError(f"{where}: quality must lie in [0, 1]; out of range for models {cols}")


def check_cost(cost: NDArray[np.float64], models: Sequence[str], where: str) -> None:
    """``ValueError`` naming the models with a negative cost."""
    bad = cost < 0
    if np.any(bad):
        cols = sorted({models[int(j)] for j in np.flatnonzero(bad.any(axis=0))})
        raise ValueError(f"{where}: costs must be non-negative; negative for models {cols}")
