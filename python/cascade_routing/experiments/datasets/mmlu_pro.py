"""MMLU-Pro evaluation outputs: ``correct.csv`` + ``output_chars.csv`` (cost estimated)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ._files import (
    aligned,
    check_unique_keys,
    folder,
    keep_complete,
    numeric_columns,
    read_csv,
    select,
)
from .base import Dataset, check_cost, check_quality

__all__ = ["FILES", "SOURCE", "load_mmlu_pro"]

#: The file that makes a folder an MMLU-Pro folder.
FILES = ("correct.csv",)

SOURCE = (
    "MMLU-Pro official evaluation outputs, github.com/TIGER-AI-Lab/MMLU-Pro at commit "
    "f418b116db00b065c2aea046518d8fcf74d39872 (eval_results/model_outputs_*_5shots.zip). "
    "Licence: Apache-2.0. Cost: no cost exists in the source; the cost here is an ESTIMATE "
    "from the completion length in characters (see load_mmlu_pro)."
)

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
    root = folder(path)
    correct_f = read_csv(root / "correct.csv", _MP_KEYS)
    chars_f = read_csv(root / "output_chars.csv", ["question_id"])
    available = [c for c in correct_f.columns if c not in _MP_KEYS]
    char_models = [c for c in chars_f.columns if c != "question_id"]
    if not available:
        raise ValueError(f"correct.csv has no model columns besides {list(_MP_KEYS)}")
    chosen = select(available, models, "correct.csv")
    missing = [m for m in chosen if m not in char_models]
    if missing:
        raise ValueError(f"output_chars.csv lacks columns for models {missing}")
    check_unique_keys(correct_f, ["question_id"], "correct.csv")
    check_unique_keys(chars_f, ["question_id"], "output_chars.csv")
    chars_f = aligned(correct_f, chars_f, "question_id", ("correct.csv", "output_chars.csv"))
    if isinstance(price_per_kchar, Mapping):
        absent = [m for m in chosen if m not in price_per_kchar]
        if absent:
            raise ValueError(f"price_per_kchar has no price for models {absent}")
        prices = np.array([float(price_per_kchar[m]) for m in chosen])
    else:
        prices = np.full(len(chosen), float(price_per_kchar))
    if not np.all(np.isfinite(prices)) or np.any(prices < 0):
        raise ValueError("price_per_kchar must be finite and non-negative")
    quality = numeric_columns(correct_f, chosen, "correct.csv")
    chars = numeric_columns(chars_f, chosen, "output_chars.csv")
    keep, dropped = keep_complete("mmlu_pro", [quality, chars], len(correct_f))
    check_quality(quality[keep], chosen, "correct.csv")
    check_cost(chars[keep], chosen, "output_chars.csv")
    cost = chars[keep] / 1000.0 * prices
    unit = (
        "thousand output characters"
        if not isinstance(price_per_kchar, Mapping) and float(price_per_kchar) == 1.0
        else "output characters / 1000 x the given prices"
    )
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
        source=SOURCE + f" Cost unit here: {unit}.",
        layout="mmlu_pro",
    )
