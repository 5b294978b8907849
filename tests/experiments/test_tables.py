"""The fitted scale of the ex-ante variances (experiments/tables.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_routing.experiments.tables import (
    TwoPhaseTables,
    fit_variance_scale,
    with_variance_scale,
)


def overstated(factor: float, n: int = 3000, k: int = 4, seed: int = 0) -> tuple:
    """Calibrated ex-ante estimates (the truth is the estimate plus independent N(0, σ²)
    noise) whose ante_var says ``factor`` · σ²; post-hoc estimates are the truth."""
    rng = np.random.default_rng(seed)
    sigma = 0.15
    ante = rng.uniform(0.2, 0.8, (n, k))
    truth = ante + rng.normal(0.0, sigma, (n, k))
    tables = TwoPhaseTables(
        ante,
        truth.copy(),
        np.full((n, k), factor * sigma**2),
        np.full((n, k), 1e-6),
        np.ones((n, k)),
        np.ones((n, k)),
    )
    return tables, truth


@pytest.mark.parametrize("factor, expected", [(4.0, 0.25), (1.0, 1.0), (0.5, 2.0)])
def test_the_scale_undoes_a_known_misstatement_of_the_variance(factor, expected) -> None:
    tables, truth = overstated(factor)
    scale, losses = fit_variance_scale(tables, np.arange(truth.shape[0]), truth)
    assert scale == expected
    assert losses[scale] == min(losses.values())


def test_the_fit_reads_only_the_rows_given() -> None:
    tables, truth = overstated(4.0, n=400)
    rows = np.arange(0, 400, 2)
    scale, losses = fit_variance_scale(tables, rows, truth[rows])
    other = truth.copy()
    other[1::2] = 1.0 - other[1::2]  # outcomes of rows not given
    assert fit_variance_scale(tables, rows, other[rows]) == (scale, losses)


def test_scaling_multiplies_only_the_ex_ante_variances() -> None:
    tables, _ = overstated(1.0, n=10)
    scaled = with_variance_scale(tables, 0.5)
    assert np.array_equal(scaled.ante_var, tables.ante_var * 0.5)
    assert np.array_equal(scaled.post_var, tables.post_var)
    assert np.array_equal(scaled.ante_quality, tables.ante_quality)


def test_bad_arguments_name_themselves() -> None:
    tables, truth = overstated(1.0, n=10)
    with pytest.raises(ValueError, match="quality"):
        fit_variance_scale(tables, np.arange(10), truth[:5])
    with pytest.raises(ValueError, match="grid"):
        fit_variance_scale(tables, np.arange(10), truth, grid=(-1.0,))
    with pytest.raises((ValueError, IndexError), match="rows"):
        fit_variance_scale(tables, np.array([11]), truth[:1])
