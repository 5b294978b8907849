"""Reading the data folders: CSV files, column checks, alignment and missing values.

Shared by every loader of :mod:`cascade_routing.experiments.datasets`. Every error names the
file. Loading is linear in the number of rows; :func:`show_progress` shows how far it got.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from tqdm import tqdm

from .base import check_cost, check_quality

logger = logging.getLogger(__name__)

__all__ = [
    "aligned",
    "check_unique_keys",
    "folder",
    "keep_complete",
    "numeric_columns",
    "read_csv",
    "select",
    "show_progress",
    "wide_tables",
]

_PROGRESS: contextvars.ContextVar[bool] = contextvars.ContextVar("progress", default=False)


def folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    return folder


class _ReadProgress(io.RawIOBase):
    """A binary file that advances a tqdm bar by the bytes the CSV parser reads."""

    def __init__(self, raw: BinaryIO, bar: Any) -> None:
        super().__init__()
        self._raw = raw
        self._bar = bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._bar.update(n)
        return int(n or 0)


@contextlib.contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Within this block, reading a data file shows a progress bar (bytes read) on stderr."""
    token = _PROGRESS.set(enabled)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _parse_csv(path: Path) -> pd.DataFrame:
    if not _PROGRESS.get():
        return pd.read_csv(path, encoding="utf-8")
    with (
        path.open("rb") as raw,
        tqdm(
            total=path.stat().st_size,
            desc=f"reading {path.name}",
            unit="B",
            unit_scale=True,
            leave=False,
            file=sys.stderr,
        ) as bar,
    ):
        stream = io.BufferedReader(_ReadProgress(raw, bar), buffer_size=1 << 20)
        return pd.read_csv(stream, encoding="utf-8")


def read_csv(path: Path, required: Sequence[str] = ()) -> pd.DataFrame:
    """A UTF-8 CSV file with at least the columns ``required``; errors name the file.

    Linear in the file size: one pass of pandas' C parser.
    """
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        frame = _parse_csv(path)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(
            f"{path} is empty; expected a header with columns {list(required)}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text (it holds the byte {exc.object[exc.start]:#04x}); save "
            "it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path} is not a well-formed CSV file: {exc}") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path.name} lacks the columns {missing}; expected columns {list(required)} "
            f"(found {list(frame.columns)})"
        )
    return frame


def numeric_columns(frame: pd.DataFrame, columns: Sequence[str], file: str) -> NDArray[np.float64]:
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise ValueError(f"{file}: columns {bad} must be numeric (empty cells allowed)")
    return np.asarray(frame[list(columns)].to_numpy(dtype=np.float64), dtype=np.float64)


def select(available: Sequence[str], models: Sequence[str] | None, file: str) -> list[str]:
    if models is None:
        return list(available)
    if isinstance(models, str):
        models = [models]
    missing = [m for m in models if m not in available]
    if missing:
        raise ValueError(
            f"{file} has no columns for models {missing}; available: {list(available)}"
        )
    if len(set(models)) != len(models):
        raise ValueError(f"model names must not repeat, got {list(models)}")
    return list(models)


def keep_complete(
    name: str, tables: Sequence[NDArray[np.float64]], n: int
) -> tuple[NDArray[np.bool_], int]:
    """Rows without NaN in any table; logs how many were dropped."""
    keep = np.ones(n, dtype=bool)
    for table in tables:
        keep &= ~np.isnan(table).any(axis=1)
    dropped = int(n - keep.sum())
    if dropped:
        logger.info(
            "%s: dropped %d of %d queries with a missing value for a selected model",
            name,
            dropped,
            n,
        )
    if not keep.any():
        raise ValueError(f"{name}: every query has a missing value for some selected model")
    return keep, dropped


def check_unique_keys(frame: pd.DataFrame, keys: Sequence[str], file: str) -> None:
    dup = frame.duplicated(subset=list(keys))
    if dup.any():
        first = frame.loc[dup, list(keys)].iloc[0].tolist()
        raise ValueError(
            f"{file}: {int(dup.sum())} duplicate rows for key {list(keys)}, e.g. {first}"
        )


def aligned(
    left: pd.DataFrame, right: pd.DataFrame, key: str, files: tuple[str, str]
) -> pd.DataFrame:
    """``right`` reordered to ``left``'s key order; both must have the same (unique) keys."""
    where = pd.Index(right[key]).get_indexer(left[key]) if len(left) == len(right) else None
    if where is None or (where < 0).any():
        raise ValueError(f"{files[0]} and {files[1]} must list the same {key} values")
    return right.iloc[where].reset_index(drop=True)


def optional_model_table(
    root: Path,
    file: str,
    reference: pd.DataFrame,
    reference_file: str,
    key: str,
    models: Sequence[str],
    keep: NDArray[np.bool_],
    source: str,
) -> NDArray[np.float64] | None:
    """A per-model table ``root/file`` (a ``key`` column, one column per model) aligned to
    the rows of ``reference`` and restricted to ``keep``; ``None`` (logged) if the file is
    absent, lists other keys, or has gaps or negative values."""
    if not (root / file).is_file():
        return None
    frame = read_csv(root / file, [key, *models])
    try:
        frame = aligned(reference, frame, key, (reference_file, file))
    except ValueError:
        logger.info("%s: %s lists other %s values; not used", source, file, key)
        return None
    values = numeric_columns(frame, list(models), file)[keep]
    if np.isnan(values).any() or np.any(values < 0):
        logger.info("%s: %s has gaps or negative values; not used", source, file)
        return None
    return values


def wide_tables(
    root: Path,
    quality_file: str,
    keys: Sequence[str],
    meta: Collection[str],
    key: str,
    models: Sequence[str] | None,
    name: str,
) -> tuple[
    pd.DataFrame, list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_], int
]:
    """A quality table and ``cost_usd.csv``, one column per model, aligned on ``key``.

    Returns the quality frame, the chosen models, the quality and cost arrays of those models
    (cost rows aligned to quality rows), the mask of complete rows and how many were dropped.
    """
    quality_f = read_csv(root / quality_file, keys)
    cost_f = read_csv(root / "cost_usd.csv", keys)
    available = [c for c in quality_f.columns if c not in meta]
    if not available:
        raise ValueError(f"{quality_file} has no model columns besides {sorted(meta)}")
    cost_models = [c for c in cost_f.columns if c not in meta]
    if set(cost_models) != set(available):
        raise ValueError(
            f"{quality_file} and cost_usd.csv must have the same model columns; "
            f"only in one of them: {sorted(set(available) ^ set(cost_models))}"
        )
    check_unique_keys(quality_f, [key], quality_file)
    check_unique_keys(cost_f, [key], "cost_usd.csv")
    cost_f = aligned(quality_f, cost_f, key, (quality_file, "cost_usd.csv"))
    chosen = select(available, models, quality_file)
    quality = numeric_columns(quality_f, chosen, quality_file)
    cost = numeric_columns(cost_f, chosen, "cost_usd.csv")
    keep, dropped = keep_complete(name, [quality, cost], len(quality_f))
    check_quality(quality[keep], chosen, quality_file)
    check_cost(cost[keep], chosen, "cost_usd.csv")
    return quality_f, chosen, quality, cost, keep, dropped
