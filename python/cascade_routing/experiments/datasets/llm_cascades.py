"""The rational-llm-cascades runs: long ``outcomes_<benchmark>.csv`` files, with confidences."""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._bundled import bundled_folder
from ._files import check_unique_keys, folder, keep_complete, read_csv, select
from .base import Dataset, check_cost, check_quality

logger = logging.getLogger(__name__)

__all__ = [
    "PARSERS",
    "PRICES_PER_TOKEN",
    "SOURCE",
    "available_benchmarks",
    "load_llm_cascades",
    "parse_choice",
    "parse_number",
    "parse_open",
    "parse_text",
]

SOURCE = (
    "github.com/mzelling/rational-llm-cascades (Zellinger & Thomson 2025, arXiv:2501.09345) at "
    "commit 0d9c8610de48960420ec2352855555a8c1e2c52f (benchmarks/data/<bench>/chain_results/"
    "*.pkl). Licence: the repository has no licence file; its companion library "
    "(mzelling/niagara) declares BSD. Cost: measured tokens x list price (US dollars)."
)

_LC_COLUMNS = ("split", "qid", "model", "correct", "raw_confidence", "cost_usd")

#: US dollars per input and per output token, from the source's price table (mzelling/niagara
#: ``models.json``, quoted in the data's README); ``cost_usd`` is tokens x these prices.
PRICES_PER_TOKEN: dict[str, tuple[float, float]] = {
    name: (p_in / 1e6, p_out / 1e6)
    for name, (p_in, p_out) in {
        "llama3.2-1b": (0.10, 0.10),
        "llama3.2-3b": (0.10, 0.10),
        "llama3.1-8b": (0.20, 0.20),
        "llama3.1-70b": (0.90, 0.90),
        "llama3.1-405b": (3.00, 3.00),
        "qwen2.5-32b-coder-instruct": (0.90, 0.90),
        "qwen2.5-72b-instruct": (0.90, 0.90),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4o": (2.50, 10.00),
    }.items()
}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def parse_choice(text: str) -> str | None:
    """The letter of a multiple-choice answer (``"B"``, ``"(B) ..."``), else ``None``."""
    m = re.match(r"^\(?([A-E])\b", text.strip().upper())
    return m.group(1) if m else None


def parse_open(text: str) -> str | None:
    """A short free-text answer, lower-cased without punctuation and articles."""
    t = " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())
    return t or None


def parse_number(text: str) -> str | None:
    """The last number of a worked answer (``"... #### 1,200"`` -> ``"1200"``)."""
    nums = _NUMBER.findall(text)
    if not nums:
        return None
    try:
        value = float(nums[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None
    return str(int(value)) if value == int(value) else str(value)


def parse_text(text: str) -> str | None:
    """Any other answer: lower-cased, with runs of white space made one space."""
    return " ".join(text.lower().split()) or None


#: How each benchmark's answers are parsed for comparison between models (other benchmarks:
#: :func:`parse_text`).
PARSERS: dict[str, Callable[[str], str | None]] = {
    "mmlu": parse_choice,
    "medmcqa": parse_choice,
    "triviaqa": parse_open,
    "truthfulqa": parse_open,
    "gsm8k": parse_number,
}


def available_benchmarks(root: Path) -> list[str]:
    """The benchmarks ``<b>`` with an ``outcomes_<b>.csv`` file in ``root``, sorted."""
    return sorted(p.name[len("outcomes_") : -len(".csv")] for p in root.glob("outcomes_*.csv"))


def _prompt_chars(root: Path, bench: str) -> pd.DataFrame | None:
    """``split, qid, prompt_chars`` (and ``text``, system + user prompt, when the prompts are
    there) from ``prompts_<b>.csv`` or ``prompt_chars_<b>.csv``."""
    prompts = root / f"prompts_{bench}.csv"
    if prompts.is_file():
        frame = read_csv(prompts, ["split", "qid", "system_prompt", "user_prompt"])
        system = frame["system_prompt"].fillna("").astype(str)
        user = frame["user_prompt"].fillna("").astype(str)
        return pd.DataFrame(
            {
                "split": frame["split"],
                "qid": frame["qid"],
                "prompt_chars": system.str.len() + user.str.len(),
                "text": system + "\n" + user,
            }
        )
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
        ``"prompt_chars"`` (characters of system + user prompt). Where the folder has them:
        ``texts`` (system + user prompt, from ``prompts_<b>.csv``), ``answer_texts`` and
        ``parsed_answers`` (``answers_<b>.csv``, parsed by :data:`PARSERS`), ``input_tokens``
        (``tokens_in``) and ``prices`` (:data:`PRICES_PER_TOKEN`, when it covers every model).
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
    answer_parts: list[pd.DataFrame | None] = []
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
        answer_parts.append(_answers(root, bench))
    long = pd.concat(parts, ignore_index=True)
    has_tokens = "tokens_in" in long.columns and pd.api.types.is_numeric_dtype(long["tokens_in"])
    long["model"] = long["model"].astype(str)
    available = list(pd.unique(long["model"]))
    chosen = select(available, models, "outcomes files")
    long = long[long["model"].isin(chosen)]
    keys = ["benchmark", "split", "qid"]
    queries = long[keys].drop_duplicates().reset_index(drop=True)
    wide = {}
    for col in ("correct", "raw_confidence", "cost_usd") + (("tokens_in",) if has_tokens else ()):
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
    texts = None
    if all(p is not None for p in prompt_parts):
        chars = pd.concat(prompt_parts, ignore_index=True)
        merged = queries.merge(chars, on=keys, how="left", validate="one_to_one")
        values = merged["prompt_chars"].to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            logger.info("llm_cascades: prompt files lack some queries; no prompt_chars feature")
        else:
            features["prompt_chars"] = values
            if "text" in merged.columns and merged["text"].notna().all():
                texts = merged["text"].astype(str).to_numpy(dtype=object)
    answer_texts = parsed = None
    if all(a is not None for a in answer_parts):
        answer_texts, parsed = _wide_answers(answer_parts, queries, keys, chosen, benches)
    tokens = None
    if has_tokens:
        tokens = wide["tokens_in"][keep]
        if np.isnan(tokens).any() or np.any(tokens < 0):
            tokens = None
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
        texts=texts,
        answer_texts=answer_texts,
        parsed_answers=parsed,
        input_tokens=tokens,
        prices={m: PRICES_PER_TOKEN[m] for m in chosen}
        if all(m in PRICES_PER_TOKEN for m in chosen)
        else None,
    )


def _answers(root: Path, bench: str) -> pd.DataFrame | None:
    """``split, qid, model, answer, parsed`` from ``answers_<b>.csv``, or ``None``."""
    file = root / f"answers_{bench}.csv"
    if not file.is_file():
        return None
    frame = read_csv(file, ["split", "qid", "model", "answer"])
    check_unique_keys(frame, ["split", "qid", "model"], file.name)
    frame = frame[["split", "qid", "model", "answer"]].copy()
    frame["answer"] = frame["answer"].fillna("").astype(str)
    frame["model"] = frame["model"].astype(str)
    parse = PARSERS.get(bench, parse_text)
    frame["parsed"] = [parse(t) for t in frame["answer"]]
    return frame.assign(benchmark=bench)


def _wide_answers(
    parts: Sequence[pd.DataFrame | None],
    queries: pd.DataFrame,
    keys: list[str],
    models: Sequence[str],
    benches: Sequence[str],
) -> tuple[NDArray[Any] | None, NDArray[Any] | None]:
    """Answer texts and parsed answers ``(n, k)``, or ``(None, None)`` (logged) when the
    answer files lack a (query, model) pair."""
    frame = pd.concat([p for p in parts if p is not None], ignore_index=True)
    frame = frame[frame["model"].isin(models)]
    index = pd.MultiIndex.from_frame(queries[keys])
    text = frame.pivot(index=keys, columns="model", values="answer")
    text = text.reindex(index=index, columns=list(models))
    if text.isna().to_numpy().any():
        logger.info("llm_cascades: answers files of %s lack some answers; none kept", benches)
        return None, None
    parsed = frame.pivot(index=keys, columns="model", values="parsed")
    parsed = parsed.reindex(index=index, columns=list(models))
    out = parsed.to_numpy(dtype=object)
    out[pd.isna(out)] = None
    return text.to_numpy(dtype=object), out
