"""SWE-bench Verified, bash-only agents: ``resolved.csv`` + ``cost_usd.csv``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ._files import folder, optional_model_table, read_csv, wide_tables
from .base import Dataset

logger = logging.getLogger(__name__)

__all__ = ["FILES", "SOURCE", "load_swebench"]

#: The file that makes a folder a SWE-bench folder.
FILES = ("resolved.csv",)

SOURCE = (
    "SWE-bench Verified, bash-only leaderboard (mini-swe-agent), from "
    "github.com/SWE-bench/swe-bench.github.io data/leaderboards.json at commit "
    "f1176b65ae29d14f4f52208b48e3d8cfc972bc17. Licence: CC BY-NC 4.0 (attribution, "
    "non-commercial). Cost: measured US dollars per agent run."
)

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
        ``repo`` (declared as priors: ``group_priors=True``), ``query_ids`` =
        ``instance_id``. Model names are the display names of ``models.csv`` when that file
        exists and gives unique names, else the column names. With ``api_calls.csv``,
        ``answer_scores`` = the agent's number of LLM calls on the instance (known once it
        has run). The data has no problem statements, so no ``texts``.
    """
    root = folder(path)
    resolved_f, chosen, quality, cost, keep, dropped = wide_tables(
        root, "resolved.csv", _SWE_KEYS, _SWE_KEYS, "instance_id", models, "swebench"
    )
    names = chosen
    models_file = root / "models.csv"
    if models_file.is_file():
        info = read_csv(models_file, ["model_key", "display_name"])
        display = dict(zip(info["model_key"].astype(str), info["display_name"].astype(str)))
        candidate = [display.get(m, m) for m in chosen]
        if len(set(candidate)) == len(candidate):
            names = candidate
        else:
            logger.info("swebench: display names in models.csv are not unique; using column names")
    scores = optional_model_table(
        root, "api_calls.csv", resolved_f, "resolved.csv", "instance_id", chosen, keep, "swebench"
    )
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
        source=SOURCE,
        layout="swebench",
        group_priors=True,
        answer_scores=scores,
        answer_score_name="" if scores is None else "API calls of the agent run",
    )
