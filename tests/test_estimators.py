"""The estimators that ship with the package and the checks of what estimators return."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_routing import estimators
from cascade_routing.estimators import (
    RUN_VARIANCE,
    ConstantCost,
    DefaultUncertainty,
    QualityEstimate,
    TableCost,
    TwoPhaseCost,
    TwoPhaseQuality,
    as_cost_estimate,
    as_quality_estimate,
)

ANTE = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
POST = np.array([[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]])


def test_two_phase_quality_switches_to_post_hoc_once_a_model_ran() -> None:
    qe = TwoPhaseQuality(ANTE, POST, np.full((2, 3), 0.04))
    est = qe.predict([1, 0], [[None, "x", None], ["a", None, "c"]])
    np.testing.assert_array_equal(est.mean, [[0.4, 0.5, 0.6], [0.9, 0.2, 0.7]])
    np.testing.assert_array_equal(
        est.var, [[0.04, RUN_VARIANCE, 0.04], [RUN_VARIANCE, 0.04, RUN_VARIANCE]]
    )
    assert qe.n_models == 3
    exact = TwoPhaseQuality(ANTE, POST).predict(np.array([0]), [[None] * 3])
    assert exact.var is None and exact.cov is None


def test_two_phase_and_table_costs() -> None:
    ce = TwoPhaseCost(ANTE, POST)
    np.testing.assert_array_equal(ce.predict([0], [[None, 1, None]]), [[0.1, 0.8, 0.3]])
    table = TableCost(POST)
    np.testing.assert_array_equal(table.predict([1], [[None] * 3]), [POST[1]])
    const = ConstantCost([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(const.predict(["a", "b"], [[None] * 3] * 2), [[1, 2, 3]] * 2)
    np.testing.assert_allclose(ConstantCost.from_training(ANTE).costs, ANTE.mean(axis=0))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: TwoPhaseQuality(ANTE, POST[:1]), ValueError, "post_mean must have shape"),
        (lambda: TwoPhaseQuality(ANTE, POST, -np.ones((2, 3))), ValueError, "non-negative"),
        (lambda: TwoPhaseQuality(ANTE, POST, None, np.ones((2, 3))), ValueError, "ante_var"),
        (lambda: TwoPhaseQuality(np.full((2, 3), np.nan), POST), ValueError, "NaN"),
        (lambda: TwoPhaseQuality(ANTE.astype(str), POST), TypeError, "real numbers"),
        (lambda: TwoPhaseCost(-ANTE, POST), ValueError, "non-negative"),
        (lambda: ConstantCost([1.0, -1.0]), ValueError, "non-negative"),
        (lambda: ConstantCost([]), ValueError, "one cost per model"),
        (lambda: ConstantCost([[1.0]]), ValueError, "1-D"),
        (lambda: ConstantCost(["a"]), TypeError, "real numbers"),
    ],
)
def test_bad_tables_are_rejected(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


def test_table_queries_are_row_indices_checked_by_the_validation_layer() -> None:
    qe, ce = TwoPhaseQuality(ANTE, POST), TwoPhaseCost(ANTE, POST)
    for est in (qe, ce):
        with pytest.raises(ValueError, match="outside 0..1"):
            est.predict([2], [[None] * 3])
        with pytest.raises(TypeError, match="integer row indices"):
            est.predict(["q"], [[None] * 3])
        with pytest.raises(ValueError, match="entries; expected one per model"):
            est.predict([0], [[None] * 2])
    # One implementation of each check, in validation.py.
    for private in ("ran_mask", "_rows"):
        assert not hasattr(estimators, private) or getattr(estimators, private).__module__ == (
            "cascade_routing.validation"
        )


def test_default_uncertainty_is_the_covariance_of_the_estimate_errors() -> None:
    rng = np.random.default_rng(0)
    n, k = 50, 3
    post = rng.uniform(size=(n, k))
    ante = post + rng.normal(0, 0.1, (n, k))
    means = TwoPhaseQuality(ante, post)

    class MeansOnly:
        def predict(self, queries, answers):
            return means.predict(queries, answers).mean

    answers = [["x"] * k] * n
    unc = DefaultUncertainty(MeansOnly()).fit(np.arange(n), answers)
    nothing = np.zeros(k, dtype=bool)
    np.testing.assert_allclose(unc.uncertainty(nothing), np.cov(ante - post, rowvar=False))
    diag = DefaultUncertainty(MeansOnly(), diagonal=True).fit(np.arange(n), answers)
    np.testing.assert_allclose(diag.uncertainty(nothing), np.var(ante - post, axis=0, ddof=1))
    est = unc.predict(np.arange(2), [[None] * k, ["x", None, None]])
    assert est.cov.shape == (2, k, k) and est.var is None
    np.testing.assert_allclose(est.cov[0], unc.uncertainty(nothing))
    with pytest.raises(ValueError, match="missing answer"):
        DefaultUncertainty(MeansOnly()).fit(np.arange(n), [[None] * k] * n)
    with pytest.raises(RuntimeError, match="not fitted"):
        DefaultUncertainty(MeansOnly()).predict([0], [[None] * k])


def test_estimator_outputs_are_normalised_and_checked() -> None:
    mean = np.zeros((2, 3))
    assert as_quality_estimate(mean, 2, 3).var is None
    assert as_quality_estimate((mean, np.ones((2, 3))), 2, 3).var.shape == (2, 3)
    assert as_quality_estimate((mean, np.ones((2, 3, 3))), 2, 3).cov.shape == (2, 3, 3)
    assert isinstance(as_quality_estimate(QualityEstimate(mean), 2, 3), QualityEstimate)
    for bad, match in (
        (np.zeros((2, 2)), "means of shape"),
        (np.full((2, 3), np.nan), "NaN"),
        ((mean, -np.ones((2, 3))), "negative"),
        ((mean, np.ones((2, 3, 2))), "covariances of shape"),
        ((mean, np.ones(3)), "uncertainty of shape"),
        ((mean, None, None), "tuple of length 3"),
    ):
        with pytest.raises(ValueError, match=match):
            as_quality_estimate(bad, 2, 3)
    with pytest.raises(TypeError, match="dtype"):
        as_quality_estimate(np.full((2, 3), "x"), 2, 3)
    with pytest.raises(ValueError, match="negative"):
        as_cost_estimate(-np.ones((2, 3)), 2, 3)
    with pytest.raises(ValueError, match="shape"):
        as_cost_estimate(np.ones((3, 2)), 2, 3)
