"""The rational-llm-cascades runs: long ``outcomes_<benchmark>.csv`` files, with confidences."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._bundled import bundled_folder
from ._files import check_unique_keys, folder, keep_complete, read_csv, select
from .base import Dataset, check_cost, check_quality

logger = logging.getLogger(__name__)

__all__ = ["SOURCE", "available_benchmarks", "load_llm_cascades"]

SOURCE = (
    "github.com/mzelling/rational-llm-cascades (Zellinger & Thomson 2025, arXiv:2501.09345) at "
    "commit 0d9c8610de48960420ec2352855555a8c1e2c52f (benchmarks/data/<bench>/chain_results/"
    "*.pkl). Licence: the repository has no licence file; its companion library "
    "(mzelling/niagara) declares BSD. Cost: measured tokens x list price (US dollars)."
)

_LC_COLUMNS = ("split", "qid", "model", "correct", "raw_confidence", "cost_usd")


def available_benchmarks(root: Path) -> list[str]:
    """The benchmarks ``<b>`` with an ``outcomes_<b>.csv`` file in ``root``, sorted."""
    return sorted(p.name[len("outcomes_") : -len(".csv")] for p in root.glob("outcomes_*.csv"))


def _prompt_chars(root: Path, bench: str) -> pd.DataFrame | None:
    """``split, qid, prompt_chars`` from ``prompts_<b>.csv`` or ``prompt_chars_<b>.csv``."""
    prompts = root / f"prompts_{bench}.csv"
    if prompts.is_file():
        frame = read_csv(prompts, ["split", "qid", "system_prompt", "user_prompt"])
        chars = (
            frame["system_prompt"].fillna("").astype(str).str.len()
            + frame["user_prompt"].fillna("").astype(str).str.len()
        )
        return pd.DataFrame({"split": frame["split"], "qid": frame["qid"], "prompt_chars": chars})
    lengths = root / f"prompt_chars_{bench}.csv"
    if lengths.is_file():
        return read_csv(lengths, ["split", "qid", "prompt_chars"])[
            ["split", "qid", "prompt_chars"]
        ]
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
        with bundled_folder("llm_cascades_mmlu") as bundled:
            return load_llm_cascades(bundled, benchmarks, models)
    root = folder(path)
    if benchmarks is None:
        benches = available_benchmarks(root)
        if not benches:
            raise FileNotFoundError(f"no outcomes_<benchmark>.csv file in {root}")
    else:
        benches = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
        if not benches:
            raise ValueError("benchmarks must name at least one benchmark")
    parts = []
    prompt_parts: list[pd.DataFrame | None] = []
    for bench in benches:
        file = f"outcomes_{bench}.csv"
        frame = read_csv(root / file, _LC_COLUMNS)
        check_unique_keys(frame, ["split", "qid", "model"], file)
        for col in ("correct", "raw_confidence", "cost_usd"):
            if not pd.api.types.is_numeric_dtype(frame[col]):
                raise ValueError(f"{file}: column {col!r} must be numeric")
        frame = frame.assign(benchmark=bench)
        parts.append(frame)
        chars = _prompt_chars(root, bench)
        prompt_parts.append(None if chars is None else chars.assign(benchmark=bench))
    long = pd.concat(parts, ignore_index=True)
    long["model"] = long["model"].astype(str)
    available = list(pd.unique(long["model"]))
    chosen = select(available, models, "outcomes files")
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
    keep, dropped = keep_complete(
        "llm_cascades", [wide["correct"], wide["cost_usd"], wide["raw_confidence"]], n
    )
    quality, cost, confidence = (wide[c][keep] for c in ("correct", "cost_usd", "raw_confidence"))
    check_quality(quality, chosen, "outcomes 'correct'")
    check_cost(cost, chosen, "outcomes 'cost_usd'")
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
    ids = (
        queries["benchmark"].astype(str)
        + "/"
        + queries["split"].astype(str)
        + "/"
        + queries["qid"].astype(str)
    ).to_numpy()
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
        source=SOURCE,
        layout="llm_cascades",
    )
