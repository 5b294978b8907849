"""Per-group estimates: the same numbers as a mask per group, in one pass over the rows."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_routing.experiments.datasets import Dataset
from cascade_routing.experiments.real_estimators import (
    MAX_GROUP_FEATURES,
    _groups_in_training,
    confidence_estimates,
    swebench_estimates,
)


class CountingDataset(Dataset):
    """A Dataset that counts how often its ``groups`` are read."""

    reads = 0

    def __getattribute__(self, name: str):
        if name == "groups":
            type(self).reads += 1
        return super().__getattribute__(name)


def _data(n: int, n_groups: int, seed: int = 0, cls=Dataset, **extra) -> Dataset:
    rng = np.random.default_rng(seed)
    k = 3
    return cls(
        name="toy",
        models=("a", "b", "c"),
        quality=rng.integers(0, 2, (n, k)).astype(float),
        cost=rng.uniform(0.1, 1.0, (n, k)) * np.arange(1, k + 1),
        groups=np.array([f"g{i % n_groups:05d}" for i in rng.permutation(n)]),
        group_priors=True,
        **extra,
    )


@pytest.mark.parametrize("n_groups", [1, 3, 50, 400])
def test_groups_in_training_matches_a_mask_per_group(n_groups) -> None:
    data = _data(400, n_groups)
    train = np.random.default_rng(1).permutation(400)[:150]
    got = list(_groups_in_training(data.groups, train))
    levels = np.unique(data.groups[train])
    assert len(got) == levels.size
    for (in_train, rows), g in zip(got, levels):
        np.testing.assert_array_equal(in_train, train[data.groups[train] == g])
        np.testing.assert_array_equal(rows, np.flatnonzero(data.groups == g))


def _naive_swebench_ante(data: Dataset, train, prior: float) -> np.ndarray:
    y = data.quality
    overall = y[train].mean(axis=0)
    ante = np.broadcast_to(overall, y.shape).copy()
    for g in np.unique(data.groups[train]):
        in_train = train[data.groups[train] == g]
        rate = (y[in_train].sum(axis=0) + prior * overall) / (in_train.size + prior)
        ante[data.groups == g] = rate
    return ante


def test_swebench_estimates_equal_the_mask_per_group_definition() -> None:
    data = _data(600, 40)
    train = np.arange(0, 600, 2)
    tables = swebench_estimates(data, train, prior_strength=5.0)
    np.testing.assert_array_equal(tables.ante_quality, _naive_swebench_ante(data, train, 5.0))


@pytest.mark.parametrize("estimate", [swebench_estimates, confidence_estimates])
def test_per_group_work_does_not_scan_all_rows_once_per_group(estimate) -> None:
    """Reading ``groups`` once per group made every group a full scan of the rows: with a
    repository per query, estimating was quadratic in the rows (1e5 rows took minutes)."""
    n = 1000
    extra = {}
    if estimate is confidence_estimates:
        rng = np.random.default_rng(2)
        extra = {
            "confidence": rng.normal(size=(n, 3)),
            "features": {"prompt_chars": rng.integers(10, 500, n).astype(float)},
        }
    data = _data(n, n, cls=CountingDataset, **extra)  # every query its own group
    CountingDataset.reads = 0
    estimate(data, np.arange(0, n, 2))
    assert CountingDataset.reads <= 10


def test_confidence_estimates_drop_group_features_beyond_the_cap(caplog) -> None:
    rng = np.random.default_rng(3)
    n_groups = MAX_GROUP_FEATURES + 20
    n = 10 * n_groups
    data = _data(n, n_groups, confidence=rng.normal(size=(n, 3)))
    with caplog.at_level("INFO", logger="cascade_routing.experiments.real_estimators"):
        tables = confidence_estimates(data, np.arange(0, n, 2))
    assert any("no per-group features" in r.getMessage() for r in caplog.records)
    assert np.all(np.isfinite(tables.post_quality))
