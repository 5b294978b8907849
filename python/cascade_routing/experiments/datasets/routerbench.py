"""RouterBench rows: ``quality.csv`` + ``cost_usd.csv``, one column per model."""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._bundled import bundled_folder
from ._files import folder, optional_model_table, read_csv, wide_tables
from .base import Dataset

logger = logging.getLogger(__name__)

__all__ = ["FILES", "SOURCE", "load_routerbench"]

#: The file that makes a folder a RouterBench folder (``cost_usd.csv`` must sit beside it;
#: the loader names it when it is missing).
FILES = ("quality.csv",)

SOURCE = (
    "RouterBench rows (Hu et al. 2024, withmartian/routerbench) for ARC-Challenge, MBPP and "
    "Winogrande, as vendored by github.com/shuhao02/RouterDC at commit "
    "0e63989c5bf4363330b8a4616386e3f7f116d9f8 (datasets/routerbench_zs/*.csv). Licence: RouterDC "
    "has no licence file; the rows are RouterBench's, whose Hugging Face dataset card carries "
    "the licence. Cost: measured US dollars per prompt."
)

_RB_KEYS = ("rb_row", "sample_id", "eval_name")
_RB_META = set(_RB_KEYS) | {"routerdc_split"}


def load_routerbench(
    path: str | Path | None = None, models: Sequence[str] | None = None
) -> Dataset:
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
        ``prompts_*.csv`` files are present. With the prompts, ``texts`` (the prompt strings,
        joined); with ``response_chars.csv``, ``answer_scores`` (each response's length in
        characters: the only per-answer record of RouterBench, which keeps no confidences).
    """
    if path is None:
        with bundled_folder("routerbench") as bundled:
            return load_routerbench(bundled, models)
    root = folder(path)
    quality_f, chosen, quality, cost, keep, dropped = wide_tables(
        root, "quality.csv", _RB_KEYS, _RB_META, "rb_row", models, "routerbench"
    )
    features: dict[str, NDArray[Any]] = {}
    if "routerdc_split" in quality_f.columns:
        features["routerdc_split"] = quality_f["routerdc_split"].astype(str).to_numpy()[keep]
    prompt_files = sorted(root.glob("prompts_*.csv"))
    texts = None
    if prompt_files:
        prompts = pd.concat([read_csv(p, ["rb_row", "prompt"]) for p in prompt_files])
        stored = dict(zip(prompts["rb_row"], prompts["prompt"].fillna("").astype(str)))
        chars = np.array(
            [len(stored[r]) if r in stored else np.nan for r in quality_f["rb_row"]],
            dtype=np.float64,
        )
        if np.isnan(chars[keep]).any():
            logger.info("routerbench: prompts_*.csv lack some rows; no prompt_chars feature")
        else:
            features["prompt_chars"] = chars[keep]
            rows = quality_f["rb_row"].to_numpy()[keep]
            texts = np.array([_prompt_text(stored[r]) for r in rows], dtype=object)
    scores = optional_model_table(
        root, "response_chars.csv", quality_f, "quality.csv", "rb_row", chosen, keep, "routerbench"
    )
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
        source=SOURCE,
        layout="routerbench",
        texts=texts,
        answer_scores=scores,
        answer_score_name="" if scores is None else "response length (characters)",
    )


def _prompt_text(stored: str) -> str:
    """The prompt: RouterBench stores it as the repr of a list of strings (joined here)."""
    if stored.startswith("["):
        try:
            value = ast.literal_eval(stored)  # literals only: never runs code
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return stored
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return "\n".join(value)
    return stored
