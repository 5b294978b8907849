"""Per-query × per-model outcome tables: the :class:`Dataset` container and its loaders.

One module per source, each reading one folder layout of the project's shared data (one README
per folder names the origin and licence of each):

* :mod:`.routerbench` — ``quality.csv`` + ``cost_usd.csv`` (RouterBench rows);
* :mod:`.llm_cascades` — ``outcomes_<benchmark>.csv`` (long format, with confidences);
* :mod:`.swebench` — ``resolved.csv`` + ``cost_usd.csv`` (SWE-bench bash-only agents);
* :mod:`.mmlu_pro` — ``correct.csv`` + ``output_chars.csv`` (no cost: an estimate is built);
* :mod:`.registry` — :func:`load` a bundled dataset by name (:func:`bundled_datasets`) or any
  such folder, whose layout :func:`detect_layout` recognises.

Every loader drops the queries with a missing value for any selected model, counts them in
:attr:`Dataset.n_dropped` and logs the count (``logging``, level INFO); it never keeps them.
"""

from __future__ import annotations

from ._bundled import bundled_datasets, bundled_readme
from ._files import show_progress
from .base import Dataset
from .llm_cascades import load_llm_cascades
from .mmlu_pro import load_mmlu_pro
from .registry import LAYOUTS, Layout, detect_layout, load
from .routerbench import load_routerbench
from .swebench import load_swebench

__all__ = [
    "LAYOUTS",
    "Dataset",
    "Layout",
    "bundled_datasets",
    "bundled_readme",
    "detect_layout",
    "load",
    "load_llm_cascades",
    "load_mmlu_pro",
    "load_routerbench",
    "load_swebench",
    "show_progress",
]
