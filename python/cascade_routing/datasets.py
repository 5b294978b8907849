"""Per-query × per-model outcome tables: the :class:`Dataset` container and its loaders.

A :class:`Dataset` holds, for ``n`` queries and ``k`` models, the true quality of every model's
answer (``quality``, in ``[0, 1]``) and what the call cost (``cost``, ``>= 0``), plus optional raw
confidences, a group label per query and per-query features known before any model runs. Row
``i`` of every table is query ``i``, so the row indices are the queries the table-backed
estimators of :mod:`cascade_routing.estimators` take.

Loaders read folders in the layouts of the project's shared data (one README per folder names
the origin and licence of each):

* :func:`load_routerbench` — ``quality.csv`` + ``cost_usd.csv`` (RouterBench rows);
* :func:`load_llm_cascades` — ``outcomes_<benchmark>.csv`` (long format, with confidences);
* :func:`load_swebench` — ``resolved.csv`` + ``cost_usd.csv`` (SWE-bench bash-only agents);
* :func:`load_mmlu_pro` — ``correct.csv`` + ``output_chars.csv`` (no cost: an estimate is built);
* :func:`load` — a bundled dataset by name (:func:`bundled_datasets`) or any such folder.

Every loader drops the queries with a missing value for any selected model, counts them in
:attr:`Dataset.n_dropped` and logs the count (``logging``, level INFO); it never keeps them.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from .validation import float_array as finite_array

logger = logging.getLogger(__name__)

__all__ = [
    "Dataset",
    "bundled_datasets",
    "bundled_readme",
    "detect_layout",
    "load",
    "load_llm_cascades",
    "load_mmlu_pro",
    "load_routerbench",
    "load_swebench",
]

#: Bundled dataset name -> folder under ``cascade_routing/data``.
_BUNDLED = {
    "routerbench": "routerbench",
    "llm_cascades_mmlu": "llm_cascades_mmlu",
}

_ROUTERBENCH_SOURCE = (
    "RouterBench rows (Hu et al. 2024, withmartian/routerbench) for ARC-Challenge, MBPP and "
    "Winogrande, as vendored by github.com/shuhao02/RouterDC at commit "
    "0e63989c5bf4363330b8a4616386e3f7f116d9f8 (datasets/routerbench_zs/*.csv). Licence: RouterDC "
    "has no licence file; the rows are RouterBench's, whose Hugging Face dataset card carries "
    "the licence. Cost: measured US dollars per prompt."
)
_LLM_CASCADES_SOURCE = (
    "github.com/mzelling/rational-llm-cascades (Zellinger & Thomson 2025, arXiv:2501.09345) at "
    "commit 0d9c8610de48960420ec2352855555a8c1e2c52f (benchmarks/data/<bench>/chain_results/"
    "*.pkl). Licence: the repository has no licence file; its companion library "
    "(mzelling/niagara) declares BSD. Cost: measured tokens x list price (US dollars)."
)
_SWEBENCH_SOURCE = (
    "SWE-bench Verified, bash-only leaderboard (mini-swe-agent), from "
    "github.com/SWE-bench/swe-bench.github.io data/leaderboards.json at commit "
    "f1176b65ae29d14f4f52208b48e3d8cfc972bc17. Licence: CC BY-NC 4.0 (attribution, "
    "non-commercial). Cost: measured US dollars per agent run."
)
_MMLU_PRO_SOURCE = (
    "MMLU-Pro official evaluation outputs, github.com/TIGER-AI-Lab/MMLU-Pro at commit "
    "f418b116db00b065c2aea046518d8fcf74d39872 (eval_results/model_outputs_*_5shots.zip). "
    "Licence: Apache-2.0. Cost: no cost exists in the source; the cost here is an ESTIMATE "
    "from the completion length in characters (see load_mmlu_pro)."
)


# --------------------------------------------------------------------------- the container


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
        (see :func:`cascade_routing.real_estimators.confidence_estimates`). NaN and ``+inf``
        are not allowed.
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

    def __post_init__(self) -> None:
        models = tuple(str(m) for m in self.models)
        if len(set(models)) != len(models):
            raise ValueError(f"model names must be unique, got {list(models)}")
        quality = _numeric_table(self.quality, "quality")
        n, k = quality.shape
        if k != len(models):
            raise ValueError(f"quality has {k} columns but {len(models)} model names were given")
        cost = _numeric_table(self.cost, "cost")
        if cost.shape != (n, k):
            raise ValueError(f"cost must have shape {(n, k)} like quality, got {cost.shape}")
        _check_quality(quality, models, "quality")
        _check_cost(cost, models, "cost")
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
        if int(self.n_dropped) < 0:
            raise ValueError(f"n_dropped must be >= 0, got {self.n_dropped}")
        set_ = object.__setattr__
        set_(self, "models", models)
        set_(self, "quality", _frozen(quality))
        set_(self, "cost", _frozen(cost))
        set_(self, "confidence", None if confidence is None else _frozen(confidence))
        set_(self, "groups", None if groups is None else _frozen(groups))
        set_(self, "query_ids", _frozen(query_ids))
        set_(self, "features", features)
        set_(self, "n_dropped", int(self.n_dropped))
        set_(self, "cost_is_estimate", bool(self.cost_is_estimate))

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

    # ------------------------------------------------------------------ views

    def subset(self, rows: ArrayLike) -> Dataset:
        """The dataset restricted to ``rows`` (integer indices, in the order given, or a mask)."""
        idx = np.asarray(rows)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n_queries,):
                raise ValueError(
                    f"a boolean row mask must have shape {(self.n_queries,)}, got {idx.shape}"
                )
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"rows must be a 1-D array of integer indices or a mask, got {idx.dtype}")
        if idx.size and (idx.min() < -self.n_queries or idx.max() >= self.n_queries):
            raise IndexError(f"row index out of range for {self.n_queries} queries")
        return replace(
            self,
            quality=self.quality[idx],
            cost=self.cost[idx],
            confidence=None if self.confidence is None else self.confidence[idx],
            groups=None if self.groups is None else self.groups[idx],
            query_ids=self.query_ids[idx] if self.query_ids is not None else None,
            features={key: value[idx] for key, value in self.features.items()},
        )

    def select_models(self, names: Sequence[str]) -> Dataset:
        """The dataset with only the models ``names``, in the order given."""
        if isinstance(names, str):
            names = [names]
        names = list(names)
        missing = [m for m in names if m not in self.models]
        if missing:
            raise KeyError(f"unknown models {missing}; this dataset has {list(self.models)}")
        if len(set(names)) != len(names):
            raise ValueError(f"model names must not repeat, got {names}")
        cols = [self.models.index(m) for m in names]
        return replace(
            self,
            models=tuple(names),
            quality=self.quality[:, cols],
            cost=self.cost[:, cols],
            confidence=None if self.confidence is None else self.confidence[:, cols],
        )

    def split_rows(self, test_size: float = 0.5, seed: int = 0) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Row indices ``(train, test)``: ``sklearn.model_selection.train_test_split`` of
        ``range(n_queries)`` with ``random_state=seed`` (shuffled, deterministic under the seed)."""
        from sklearn.model_selection import train_test_split

        if self.n_queries < 2:
            raise ValueError("a split needs at least 2 queries")
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
        return self.quality.mean(axis=0)

    def mean_cost(self) -> NDArray[np.float64]:
        """Mean cost of each model (``(k,)``)."""
        return self.cost.mean(axis=0)


# --------------------------------------------------------------------------- validation


def _numeric_table(value: Any, name: str, allow_neg_inf: bool = False) -> NDArray[np.float64]:
    return finite_array(
        value, name, 2, layout="queries x models", allow_neg_inf=allow_neg_inf,
        hint="drop or fill those rows first",
    ).copy()


def _check_quality(quality: NDArray[np.float64], models: Sequence[str], where: str) -> None:
    bad = (quality < 0) | (quality > 1)
    if np.any(bad):
        cols = sorted({models[int(j)] for j in np.flatnonzero(bad.any(axis=0))})
        raise ValueError(f"{where}: quality must lie in [0, 1]; out of range for models {cols}")


def _check_cost(cost: NDArray[np.float64], models: Sequence[str], where: str) -> None:
    bad = cost < 0
    if np.any(bad):
        cols = sorted({models[int(j)] for j in np.flatnonzero(bad.any(axis=0))})
        raise ValueError(f"{where}: costs must be non-negative; negative for models {cols}")


# --------------------------------------------------------------------------- file helpers


def _folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    return folder


def _read_csv(path: Path, required: Sequence[str] = ()) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path} is empty; expected a header with columns {list(required)}") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path.name} lacks the columns {missing}; expected columns {list(required)} "
            f"(found {list(frame.columns)})"
        )
    return frame


def _numeric_columns(frame: pd.DataFrame, columns: Sequence[str], file: str) -> NDArray[np.float64]:
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ValueError(f"{file}: columns {bad} must be numeric (empty cells allowed)")
    return frame[list(columns)].to_numpy(dtype=np.float64)


def _select(available: Sequence[str], models: Sequence[str] | None, file: str) -> list[str]:
    if models is None:
        return list(available)
    if isinstance(models, str):
        models = [models]
    missing = [m for m in models if m not in available]
    if missing:
        raise ValueError(f"{file} has no columns for models {missing}; available: {list(available)}")
    if len(set(models)) != len(models):
        raise ValueError(f"model names must not repeat, got {list(models)}")
    return list(models)


def _keep_complete(
    name: str, tables: Sequence[NDArray[np.float64]], n: int
) -> tuple[NDArray[np.bool_], int]:
    """Rows without NaN in any table; logs how many were dropped."""
    keep = np.ones(n, dtype=bool)
    for table in tables:
        keep &= ~np.isnan(table).any(axis=1)
    dropped = int(n - keep.sum())
    if dropped:
        logger.info("%s: dropped %d of %d queries with a missing value for a selected model",
                    name, dropped, n)
    if not keep.any():
        raise ValueError(f"{name}: every query has a missing value for some selected model")
    return keep, dropped


def _check_unique_keys(frame: pd.DataFrame, keys: Sequence[str], file: str) -> None:
    dup = frame.duplicated(subset=list(keys))
    if dup.any():
        first = frame.loc[dup, list(keys)].iloc[0].tolist()
        raise ValueError(f"{file}: {int(dup.sum())} duplicate rows for key {list(keys)}, e.g. {first}")


def _aligned(left: pd.DataFrame, right: pd.DataFrame, key: str, files: tuple[str, str]) -> pd.DataFrame:
    """``right`` reordered to ``left``'s key order; both must have the same keys."""
    if set(left[key]) != set(right[key]) or len(left) != len(right):
        raise ValueError(f"{files[0]} and {files[1]} must list the same {key} values")
    return right.set_index(key).loc[left[key].to_numpy()].reset_index()


# --------------------------------------------------------------------------- RouterBench

_RB_KEYS = ("rb_row", "sample_id", "eval_name")
_RB_META = set(_RB_KEYS) | {"routerdc_split"}


def _wide_tables(
    folder: Path,
    quality_file: str,
    keys: Sequence[str],
    meta: Collection[str],
    key: str,
    models: Sequence[str] | None,
    name: str,
) -> tuple[pd.DataFrame, list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], int]:
    """A quality table and ``cost_usd.csv``, one column per model, aligned on ``key``.

    Returns the quality frame, the chosen models, the quality and cost arrays of those models
    (cost rows aligned to quality rows), the mask of complete rows and how many were dropped.
    """
    quality_f = _read_csv(folder / quality_file, keys)
    cost_f = _read_csv(folder / "cost_usd.csv", keys)
    available = [c for c in quality_f.columns if c not in meta]
    if not available:
        raise ValueError(f"{quality_file} has no model columns besides {sorted(meta)}")
    cost_models = [c for c in cost_f.columns if c not in meta]
    if set(cost_models) != set(available):
        raise ValueError(
            f"{quality_file} and cost_usd.csv must have the same model columns; "
            f"only in one of them: {sorted(set(available) ^ set(cost_models))}"
        )
    _check_unique_keys(quality_f, [key], quality_file)
    _check_unique_keys(cost_f, [key], "cost_usd.csv")
    cost_f = _aligned(quality_f, cost_f, key, (quality_file, "cost_usd.csv"))
    chosen = _select(available, models, quality_file)
    quality = _numeric_columns(quality_f, chosen, quality_file)
    cost = _numeric_columns(cost_f, chosen, "cost_usd.csv")
    keep, dropped = _keep_complete(name, [quality, cost], len(quality_f))
    _check_quality(quality[keep], chosen, quality_file)
    _check_cost(cost[keep], chosen, "cost_usd.csv")
    return quality_f, chosen, quality, cost, keep, dropped


def load_routerbench(path: str | Path | None = None, models: Sequence[str] | None = None) -> Dataset:
    """Load RouterBench rows: ``quality.csv`` and ``cost_usd.csv`` (keyed by ``rb_row``).

    Parameters
    ----------
    path : str or Path, optional
        A folder in the layout of ``routerbench_subset``; default: the bundled copy.
    models : sequence of str, optional
        Models to keep (in this order); default all. Rows are dropped for missing values of
        the selected models only.

    Returns
    -------
    Dataset
        ``groups`` = ``eval_name``; ``query_ids`` = ``rb_row``; features: ``"routerdc_split"``
        when the file has it, ``"prompt_chars"`` (length of the stored prompt string) when
        ``prompts_*.csv`` files are present.
    """
    if path is None:
        with _bundled_folder("routerbench") as folder:
            return load_routerbench(folder, models)
    folder = _folder(path)
    quality_f, chosen, quality, cost, keep, dropped = _wide_tables(
        folder, "quality.csv", _RB_KEYS, _RB_META, "rb_row", models, "routerbench"
    )
    features: dict[str, NDArray[Any]] = {}
    if "routerdc_split" in quality_f.columns:
        features["routerdc_split"] = quality_f["routerdc_split"].astype(str).to_numpy()[keep]
    prompt_files = sorted(folder.glob("prompts_*.csv"))
    if prompt_files:
        prompts = pd.concat([_read_csv(p, ["rb_row", "prompt"]) for p in prompt_files])
        lengths = dict(zip(prompts["rb_row"], prompts["prompt"].fillna("").astype(str).str.len()))
        chars = np.array([lengths.get(r, np.nan) for r in quality_f["rb_row"]], dtype=np.float64)
        if np.isnan(chars[keep]).any():
            logger.info("routerbench: prompts_*.csv lack some rows; no prompt_chars feature")
        else:
            features["prompt_chars"] = chars[keep]
    return Dataset(
        name="routerbench",
        models=tuple(chosen),
        quality=quality[keep],
        cost=cost[keep],
        groups=quality_f["eval_name"].astype(str).to_numpy()[keep],
        query_ids=quality_f["rb_row"].to_numpy()[keep],
        features=features,
        n_dropped=dropped,
        cost_is_estimate=False,
        source=_ROUTERBENCH_SOURCE,
    )


# --------------------------------------------------------------------------- llm cascades

_LC_COLUMNS = ("split", "qid", "model", "correct", "raw_confidence", "cost_usd")


def _available_benchmarks(folder: Path) -> list[str]:
    return sorted(p.name[len("outcomes_"):-len(".csv")] for p in folder.glob("outcomes_*.csv"))


def _prompt_chars(folder: Path, bench: str) -> pd.DataFrame | None:
    """``split, qid, prompt_chars`` from ``prompts_<b>.csv`` or ``prompt_chars_<b>.csv``."""
    prompts = folder / f"prompts_{bench}.csv"
    if prompts.is_file():
        frame = _read_csv(prompts, ["split", "qid", "system_prompt", "user_prompt"])
        chars = (
            frame["system_prompt"].fillna("").astype(str).str.len()
            + frame["user_prompt"].fillna("").astype(str).str.len()
        )
        return pd.DataFrame({"split": frame["split"], "qid": frame["qid"], "prompt_chars": chars})
    lengths = folder / f"prompt_chars_{bench}.csv"
    if lengths.is_file():
        return _read_csv(lengths, ["split", "qid", "prompt_chars"])[["split", "qid", "prompt_chars"]]
    return None


def load_llm_cascades(
    path: str | Path | None = None,
    benchmarks: Sequence[str] | str | None = ("mmlu",),
    models: Sequence[str] | None = None,
) -> Dataset:
    """Load the rational-llm-cascades runs: long ``outcomes_<b>.csv`` turned wide.

    Parameters
    ----------
    path : str or Path, optional
        A folder in the layout of ``llm_cascades_confidence``; default: the bundled
        ``llm_cascades_mmlu`` copy (MMLU only).
    benchmarks : sequence of str, str or None
        Benchmarks ``<b>`` to read (``outcomes_<b>.csv`` each); ``None`` reads all present.
    models : sequence of str, optional
        Models to keep (in this order); default all, in order of first appearance.

    Returns
    -------
    Dataset
        ``quality`` = ``correct``, ``cost`` = ``cost_usd``, ``confidence`` = ``raw_confidence``
        (log-probabilities; ``-inf`` kept where the source could not extract a confidence);
        ``groups`` = the benchmark; ``query_ids`` = ``"<b>/<split>/<qid>"``; features
        ``"source_split"`` (the source's own ``train``/``test``) and, when
        ``prompts_<b>.csv`` or ``prompt_chars_<b>.csv`` exists for every benchmark,
        ``"prompt_chars"`` (characters of system + user prompt).
    """
    if path is None:
        with _bundled_folder("llm_cascades_mmlu") as folder:
            return load_llm_cascades(folder, benchmarks, models)
    folder = _folder(path)
    if benchmarks is None:
        benches = _available_benchmarks(folder)
        if not benches:
            raise FileNotFoundError(f"no outcomes_<benchmark>.csv file in {folder}")
    else:
        benches = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
        if not benches:
            raise ValueError("benchmarks must name at least one benchmark")
    parts = []
    prompt_parts: list[pd.DataFrame | None] = []
    for bench in benches:
        file = f"outcomes_{bench}.csv"
        frame = _read_csv(folder / file, _LC_COLUMNS)
        _check_unique_keys(frame, ["split", "qid", "model"], file)
        for col in ("correct", "raw_confidence", "cost_usd"):
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise ValueError(f"{file}: column {col!r} must be numeric")
        frame = frame.assign(benchmark=bench)
        parts.append(frame)
        chars = _prompt_chars(folder, bench)
        prompt_parts.append(None if chars is None else chars.assign(benchmark=bench))
    long = pd.concat(parts, ignore_index=True)
    long["model"] = long["model"].astype(str)
    available = list(pd.unique(long["model"]))
    chosen = _select(available, models, "outcomes files")
    long = long[long["model"].isin(chosen)]
    keys = ["benchmark", "split", "qid"]
    queries = long[keys].drop_duplicates().reset_index(drop=True)
    wide = {}
    for col in ("correct", "raw_confidence", "cost_usd"):
        table = long.pivot(index=keys, columns="model", values=col)
        table = table.reindex(index=pd.MultiIndex.from_frame(queries), columns=chosen)
        wide[col] = table.to_numpy(dtype=np.float64)
    n = len(queries)
    # A missing confidence is a missing value; -inf is a value and stays.
    keep, dropped = _keep_complete("llm_cascades", [wide["correct"], wide["cost_usd"],
                                                    wide["raw_confidence"]], n)
    quality, cost, confidence = (wide[c][keep] for c in ("correct", "cost_usd", "raw_confidence"))
    _check_quality(quality, chosen, "outcomes 'correct'")
    _check_cost(cost, chosen, "outcomes 'cost_usd'")
    if np.any(confidence == np.inf):
        raise ValueError("outcomes 'raw_confidence' contains +inf; only -inf is allowed")
    queries = queries[keep].reset_index(drop=True)
    features: dict[str, NDArray[Any]] = {"source_split": queries["split"].astype(str).to_numpy()}
    if all(p is not None for p in prompt_parts):
        chars = pd.concat(prompt_parts, ignore_index=True)
        merged = queries.merge(chars, on=keys, how="left", validate="one_to_one")
        values = merged["prompt_chars"].to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            logger.info("llm_cascades: prompt files lack some queries; no prompt_chars feature")
        else:
            features["prompt_chars"] = values
    ids = (queries["benchmark"].astype(str) + "/" + queries["split"].astype(str) + "/"
           + queries["qid"].astype(str)).to_numpy()
    name = "llm_cascades_" + "+".join(benches)
    return Dataset(
        name=name,
        models=tuple(chosen),
        quality=quality,
        cost=cost,
        confidence=confidence,
        groups=queries["benchmark"].astype(str).to_numpy(),
        query_ids=ids,
        features=features,
        n_dropped=dropped,
        cost_is_estimate=False,
        source=_LLM_CASCADES_SOURCE,
    )


# --------------------------------------------------------------------------- SWE-bench

_SWE_KEYS = ("instance_id", "repo")


def load_swebench(path: str | Path, models: Sequence[str] | None = None) -> Dataset:
    """Load SWE-bench Verified bash-only results: ``resolved.csv`` + ``cost_usd.csv``.

    Parameters
    ----------
    path : str or Path
        A folder in the layout of ``swebench_verified_bashonly``.
    models : sequence of str, optional
        Model columns (the leaderboard ``folder`` names) to keep, in this order.

    Returns
    -------
    Dataset
        ``quality`` = resolved (0/1), ``cost`` = measured dollars per agent run, ``groups`` =
        ``repo``, ``query_ids`` = ``instance_id``. Model names are the display names of
        ``models.csv`` when that file exists and gives unique names, else the column names.
    """
    folder = _folder(path)
    resolved_f, chosen, quality, cost, keep, dropped = _wide_tables(
        folder, "resolved.csv", _SWE_KEYS, _SWE_KEYS, "instance_id", models, "swebench"
    )
    names = chosen
    models_file = folder / "models.csv"
    if models_file.is_file():
        info = _read_csv(models_file, ["model_key", "display_name"])
        display = dict(zip(info["model_key"].astype(str), info["display_name"].astype(str)))
        candidate = [display.get(m, m) for m in chosen]
        if len(set(candidate)) == len(candidate):
            names = candidate
        else:
            logger.info("swebench: display names in models.csv are not unique; using column names")
    return Dataset(
        name="swebench",
        models=tuple(names),
        quality=quality[keep],
        cost=cost[keep],
        groups=resolved_f["repo"].astype(str).to_numpy()[keep],
        query_ids=resolved_f["instance_id"].astype(str).to_numpy()[keep],
        features={},
        n_dropped=dropped,
        cost_is_estimate=False,
        source=_SWEBENCH_SOURCE,
    )


# --------------------------------------------------------------------------- MMLU-Pro

_MP_KEYS = ("question_id", "category", "src")


def load_mmlu_pro(
    path: str | Path,
    models: Sequence[str] | None = None,
    price_per_kchar: Mapping[str, float] | float = 1.0,
) -> Dataset:
    """Load MMLU-Pro correctness (``correct.csv``) with an **estimated** cost.

    The source has no cost, token counts or log-probabilities. The cost here is built from the
    completion length: ``cost = output_chars / 1000 * price_per_kchar[model]``. With the
    default price 1.0 for every model, cost is simply "thousands of output characters", a proxy
    for output tokens that ignores model size and input length; pass per-model prices (e.g.
    dollars per thousand output characters) for a money-like scale. ``cost_is_estimate`` is
    True either way.

    Parameters
    ----------
    path : str or Path
        A folder in the layout of ``mmlu_pro`` (``correct.csv``, ``output_chars.csv``).
    models : sequence of str, optional
        Model columns to keep, in this order; default all. DeepSeek-Coder-V2 lacks 1,681
        questions, so keeping it drops those rows.
    price_per_kchar : float or mapping of model name to float
        Price per thousand output characters, one for all models or one per selected model.

    Returns
    -------
    Dataset
        ``groups`` = ``category``; ``query_ids`` = ``question_id``; feature ``"src"`` (the
        question's original source).
    """
    folder = _folder(path)
    correct_f = _read_csv(folder / "correct.csv", _MP_KEYS)
    chars_f = _read_csv(folder / "output_chars.csv", ["question_id"])
    available = [c for c in correct_f.columns if c not in _MP_KEYS]
    char_models = [c for c in chars_f.columns if c != "question_id"]
    if not available:
        raise ValueError(f"correct.csv has no model columns besides {list(_MP_KEYS)}")
    chosen = _select(available, models, "correct.csv")
    missing = [m for m in chosen if m not in char_models]
    if missing:
        raise ValueError(f"output_chars.csv lacks columns for models {missing}")
    _check_unique_keys(correct_f, ["question_id"], "correct.csv")
    _check_unique_keys(chars_f, ["question_id"], "output_chars.csv")
    chars_f = _aligned(correct_f, chars_f, "question_id", ("correct.csv", "output_chars.csv"))
    if isinstance(price_per_kchar, Mapping):
        absent = [m for m in chosen if m not in price_per_kchar]
        if absent:
            raise ValueError(f"price_per_kchar has no price for models {absent}")
        prices = np.array([float(price_per_kchar[m]) for m in chosen])
    else:
        prices = np.full(len(chosen), float(price_per_kchar))
    if not np.all(np.isfinite(prices)) or np.any(prices < 0):
        raise ValueError("price_per_kchar must be finite and non-negative")
    quality = _numeric_columns(correct_f, chosen, "correct.csv")
    chars = _numeric_columns(chars_f, chosen, "output_chars.csv")
    keep, dropped = _keep_complete("mmlu_pro", [quality, chars], len(correct_f))
    _check_quality(quality[keep], chosen, "correct.csv")
    _check_cost(chars[keep], chosen, "output_chars.csv")
    cost = chars[keep] / 1000.0 * prices
    unit = "thousand output characters" if not isinstance(price_per_kchar, Mapping) and \
        float(price_per_kchar) == 1.0 else "output characters / 1000 x the given prices"
    return Dataset(
        name="mmlu_pro",
        models=tuple(chosen),
        quality=quality[keep],
        cost=cost,
        groups=correct_f["category"].astype(str).to_numpy()[keep],
        query_ids=correct_f["question_id"].to_numpy()[keep],
        features={"src": correct_f["src"].astype(str).to_numpy()[keep]},
        n_dropped=dropped,
        cost_is_estimate=True,
        source=_MMLU_PRO_SOURCE + f" Cost unit here: {unit}.",
    )


# --------------------------------------------------------------------------- dispatch


def bundled_datasets() -> list[str]:
    """Names of the datasets shipped inside the package (for :func:`load`)."""
    return sorted(_BUNDLED)


@contextlib.contextmanager
def _bundled_folder(name: str) -> Iterator[Path]:
    if name not in _BUNDLED:
        raise KeyError(f"no bundled dataset {name!r}; bundled: {bundled_datasets()}")
    resource = importlib.resources.files("cascade_routing") / "data" / _BUNDLED[name]
    with importlib.resources.as_file(resource) as folder:
        yield Path(folder)


def bundled_readme(name: str) -> str:
    """The README (origin, licence, changes) of a bundled dataset."""
    if name not in _BUNDLED:
        raise KeyError(f"no bundled dataset {name!r}; bundled: {bundled_datasets()}")
    resource = importlib.resources.files("cascade_routing") / "data" / _BUNDLED[name] / "README.md"
    return resource.read_text(encoding="utf-8")


def detect_layout(folder: str | Path) -> str:
    """Which loader reads ``folder``: ``"routerbench"``, ``"llm_cascades"``, ``"swebench"`` or
    ``"mmlu_pro"``, decided by the files present."""
    path = _folder(folder)

    def has(name: str) -> bool:
        return (path / name).is_file()

    if has("resolved.csv"):
        return "swebench"
    if has("correct.csv"):
        return "mmlu_pro"
    if has("quality.csv") and has("cost_usd.csv"):
        return "routerbench"
    if _available_benchmarks(path):
        return "llm_cascades"
    raise ValueError(
        f"cannot tell the layout of {path}: expected quality.csv + cost_usd.csv (RouterBench), "
        "outcomes_<benchmark>.csv (llm_cascades), resolved.csv + cost_usd.csv (SWE-bench) or "
        "correct.csv + output_chars.csv (MMLU-Pro)"
    )


def load(name_or_path: str | Path, **kwargs: Any) -> Dataset:
    """Load a bundled dataset by name (see :func:`bundled_datasets`) or a data folder.

    A folder's layout is detected by :func:`detect_layout`; ``kwargs`` go to its loader (e.g.
    ``models=``, or ``benchmarks=`` for llm_cascades, whose folders load ``("mmlu",)`` unless
    told otherwise).
    """
    if isinstance(name_or_path, str) and name_or_path in _BUNDLED:
        if name_or_path == "routerbench":
            return load_routerbench(None, **kwargs)
        return load_llm_cascades(None, **kwargs)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is neither a bundled dataset ({bundled_datasets()}) nor an "
            "existing folder"
        )
    layout = detect_layout(path)
    loader = {
        "routerbench": load_routerbench,
        "llm_cascades": load_llm_cascades,
        "swebench": load_swebench,
        "mmlu_pro": load_mmlu_pro,
    }[layout]
    return loader(path, **kwargs)  # type: ignore[operator]

