"""Loading logged data is linear in its rows: a RouterBench-layout folder of 20,000 rows and
one of 200,000, read by ``cascade_routing.experiments.datasets.load``.

Run: ``pytest bench/test_bench_datasets.py --benchmark-only``. The hard check compares the
time per row of the two sizes, measured in the same run: the larger may take at most 3× as
long per row (a quadratic reader would take 10×).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cascade_routing.experiments import datasets

MODELS = ("a", "b", "c")


def _folder(root: Path, n: int) -> Path:
    """quality.csv and cost_usd.csv with ``n`` rows of 3 models (RouterBench layout)."""
    folder = root / f"rb{n}"
    folder.mkdir()
    rng = np.random.default_rng(n)
    ids = np.arange(n)
    for name, table in (
        ("quality.csv", rng.integers(0, 2, (n, 3)).astype(float)),
        ("cost_usd.csv", rng.uniform(0.1, 1.0, (n, 3)) * np.arange(1, 4)),
    ):
        lines = [
            f"{i},s.{i},arc," + ",".join(f"{v:.17g}" for v in row) for i, row in zip(ids, table)
        ]
        text = "rb_row,sample_id,eval_name," + ",".join(MODELS) + "\n" + "\n".join(lines)
        (folder / name).write_text(text + "\n")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("csv")
    return {n: _folder(root, n) for n in (20_000, 200_000)}


def _seconds(folder: Path) -> float:
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        data = datasets.load(str(folder))
        best = min(best, time.perf_counter() - t)
    assert data.quality.shape[1] == len(MODELS)
    return best


def test_csv_loading_is_linear_in_rows(benchmark, folders) -> None:
    small, large = _seconds(folders[20_000]), _seconds(folders[200_000])
    per_row_ratio = (large / 200_000) / (small / 20_000)
    print(f"\n20k rows {small:.3f} s, 200k rows {large:.3f} s, per-row ratio {per_row_ratio:.2f}")
    assert per_row_ratio <= 3.0
    data = benchmark(datasets.load, str(folders[200_000]))
    assert data.quality.shape == (200_000, len(MODELS))
