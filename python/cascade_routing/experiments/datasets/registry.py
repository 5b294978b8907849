"""The registry of folder layouts: which loader reads a folder, decided by its files.

Each source module (:mod:`.routerbench`, :mod:`.llm_cascades`, :mod:`.swebench`,
:mod:`.mmlu_pro`) declares its loader here as a :class:`Layout`. :func:`detect_layout` tries
them in :data:`LAYOUTS` order; :func:`load` reads a bundled dataset by name or any folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import BUNDLED
from . import llm_cascades, mmlu_pro, routerbench, swebench
from ._bundled import bundled_datasets
from ._files import folder
from .base import Dataset

__all__ = ["LAYOUTS", "Layout", "detect_layout", "load"]


@dataclass(frozen=True)
class Layout:
    """A folder layout: its name, how to recognise it, its loader and a one-line description."""

    name: str
    matches: Callable[[Path], bool]
    loader: Callable[..., Dataset]
    description: str


def _has_all(*files: str) -> Callable[[Path], bool]:
    return lambda root: all((root / f).is_file() for f in files)


#: Layouts in detection order (the first that matches wins).
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "swebench",
        _has_all(*swebench.FILES),
        swebench.load_swebench,
        "resolved.csv + cost_usd.csv (SWE-bench)",
    ),
    Layout(
        "mmlu_pro",
        _has_all(*mmlu_pro.FILES),
        mmlu_pro.load_mmlu_pro,
        "correct.csv + output_chars.csv (MMLU-Pro)",
    ),
    Layout(
        "routerbench",
        _has_all(*routerbench.FILES),
        routerbench.load_routerbench,
        "quality.csv + cost_usd.csv (RouterBench)",
    ),
    Layout(
        "llm_cascades",
        lambda root: bool(llm_cascades.available_benchmarks(root)),
        llm_cascades.load_llm_cascades,
        "outcomes_<benchmark>.csv (llm_cascades)",
    ),
)

_BY_NAME = {layout.name: layout for layout in LAYOUTS}


def detect_layout(path: str | Path) -> str:
    """Which loader reads the folder ``path``: ``"routerbench"``, ``"llm_cascades"``,
    ``"swebench"`` or ``"mmlu_pro"``, decided by the files present."""
    root = folder(path)
    for layout in LAYOUTS:
        if layout.matches(root):
            return layout.name
    expected = ", ".join(layout.description for layout in LAYOUTS)
    raise ValueError(f"cannot tell the layout of {root}: expected {expected}")


def load(name_or_path: str | Path, **kwargs: Any) -> Dataset:
    """Load a bundled dataset by name (see :func:`bundled_datasets`) or a data folder.

    A folder's layout is detected by :func:`detect_layout`; ``kwargs`` go to its loader (e.g.
    ``models=``, or ``benchmarks=`` for llm_cascades, whose folders load ``("mmlu",)`` unless
    told otherwise).
    """
    if isinstance(name_or_path, str) and name_or_path in BUNDLED:
        if name_or_path == "routerbench":
            return routerbench.load_routerbench(None, **kwargs)
        return llm_cascades.load_llm_cascades(None, **kwargs)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is neither a bundled dataset ({bundled_datasets()}) nor an "
            "existing folder"
        )
    return _BY_NAME[detect_layout(path)].loader(path, **kwargs)
