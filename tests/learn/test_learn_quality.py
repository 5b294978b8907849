"""LearnedQuality: no leakage, calibration, run-set conditioning, bad input, strategies."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from _learn_synth import make_logs

from cascade_routing import CascadeRouter, UnknownModelError
from cascade_routing.learn import LearnedQuality, ModelAnswer, PriceTableCost, brier_score

SMALL: dict[str, Any] = {
    "n_hash_features": 1024,
    "n_folds": 3,
    "n_random_runsets": 4,
    "scale_grid": (0.0, 0.5, 1.0),
    "alphas_ante": (3.0,),
}


@pytest.fixture(scope="module")
def train() -> dict[str, Any]:
    return make_logs(240, seed=0)


@pytest.fixture(scope="module")
def test() -> dict[str, Any]:
    return make_logs(160, seed=1)


@pytest.fixture(scope="module")
def fitted(train: dict[str, Any]) -> LearnedQuality:
    return LearnedQuality(train["models"], seed=0, **SMALL).fit(
        train["queries"], train["answers"], train["quality"]
    )


def _mask(rows: list[list[Any]], keep: list[int]) -> list[list[Any]]:
    return [[a if j in keep else None for j, a in enumerate(row)] for row in rows]


def test_predict_is_a_full_covariance_estimate(
    fitted: LearnedQuality, test: dict[str, Any]
) -> None:
    k = len(test["models"])
    rng = np.random.default_rng(0)
    answers = [[a if rng.random() < 0.5 else None for a in row] for row in test["answers"]]
    est = fitted.predict(test["queries"], answers)
    assert est.mean.shape == (160, k) and est.cov is not None and est.cov.shape == (160, k, k)
    assert np.all((est.mean > 0) & (est.mean < 1))
    for c in est.cov:
        assert np.allclose(c, c.T)
        assert np.linalg.eigvalsh(c).min() > -1e-10
    full = fitted.predict(test["queries"][:3], test["answers"][:3])
    assert full.cov is not None and np.all(full.cov == 0.0)
    # Before anything ran, some model's estimate is uncertain.
    none = fitted.predict(test["queries"][:1], [[None] * k])
    assert none.cov is not None and (fitted.scale_ == 0 or np.trace(none.cov[0]) > 0)


def test_no_leakage_test_outcomes(train: dict[str, Any], test: dict[str, Any]) -> None:
    """Fitted on the training rows, estimates of the test rows ignore the test outcomes."""
    rng = np.random.default_rng(5)
    pooled_q = train["queries"] + test["queries"]
    pooled_a = train["answers"] + test["answers"]
    y = np.vstack([train["quality"], test["quality"]])
    n_tr = len(train["queries"])
    y_perm = y.copy()
    y_perm[n_tr:] = y[n_tr:][rng.permutation(len(test["queries"]))]
    assert not np.array_equal(y, y_perm)
    preds = []
    for table in (y, y_perm):
        est = LearnedQuality(train["models"], seed=0, **SMALL)
        est.fit(pooled_q[:n_tr], pooled_a[:n_tr], table[:n_tr])
        preds.append(est.predict(pooled_q[n_tr:], _mask(pooled_a[n_tr:], [0, 2])))
    assert np.array_equal(preds[0].mean, preds[1].mean)
    assert preds[0].cov is not None and preds[1].cov is not None
    assert np.array_equal(preds[0].cov, preds[1].cov)


def test_cross_fitted_rows_do_not_see_their_own_outcomes(train: dict[str, Any]) -> None:
    """Permuting the outcomes inside one fold leaves that fold's cross-fitted means unchanged
    (and changes the other folds', so the test can fail)."""
    settings = {**SMALL, "calibration": "none", "uncertainty_scale": 1.0}
    first = LearnedQuality(train["models"], seed=0, **settings).fit(
        train["queries"], train["answers"], train["quality"]
    )
    fold0 = np.flatnonzero(first.fold_ == 0)
    y = train["quality"].copy()
    y[fold0] = y[fold0][np.random.default_rng(1).permutation(fold0.size)]
    assert not np.array_equal(y, train["quality"])
    second = LearnedQuality(train["models"], seed=0, **settings).fit(
        train["queries"], train["answers"], y
    )
    assert np.array_equal(first.fold_, second.fold_)
    rows = list(range(len(train["queries"])))
    answers = _mask(train["answers"], [1])
    a = first.cross_fitted().predict(rows, answers).mean
    b = second.cross_fitted().predict(rows, answers).mean
    assert np.array_equal(a[fold0], b[fold0])
    other = first.fold_ != 0
    assert not np.allclose(a[other], b[other])


def test_calibration_beats_raw_confidence(fitted: LearnedQuality, test: dict[str, Any]) -> None:
    """On held-out data the post-hoc estimate (model j alone has run) has a lower Brier score
    than the raw confidence read as a probability."""
    report = fitted.calibration_report(test["queries"], test["answers"], test["quality"])
    for j, name in enumerate(test["models"]):
        p = fitted.predict(test["queries"], _mask(test["answers"], [j])).mean[:, j]
        raw = np.exp(test["confidence"][:, j])
        y = test["quality"][:, j]
        assert brier_score(p, y) < brier_score(raw, y), name
        own = report[name]["own"]
        assert own["brier_calibrated"] == pytest.approx(brier_score(p, y))
        assert own["brier_raw"] == pytest.approx(brier_score(raw, y))
        for key in ("ece_raw", "ece_uncalibrated", "ece_calibrated", "brier_uncalibrated"):
            assert 0.0 <= own[key] <= 1.0
        assert math.isnan(report[name]["ex_ante"]["brier_raw"])


def test_other_models_answers_change_the_estimate(
    fitted: LearnedQuality, test: dict[str, Any]
) -> None:
    q = test["queries"][:1]
    row = test["answers"][0]
    target = 3  # "huge", not run

    def mean(answers: list[Any]) -> float:
        return float(fitted.predict(q, [answers]).mean[0, target])

    sure = replace(row[0], confidence=-0.01)
    unsure = replace(row[0], confidence=-3.0)
    assert mean([sure, None, None, None]) != mean([unsure, None, None, None])
    # Agreement between two run models moves the estimate of a third.
    a = replace(row[0], parsed="A")
    b_agree, b_disagree = replace(row[1], parsed="A"), replace(row[1], parsed="C")
    assert mean([a, b_agree, None, None]) != mean([a, b_disagree, None, None])
    # Once the target has run, agreement with it matters too (at a middling confidence of
    # the target: a near-certain one pins the estimate at the bound 1 - 1e-6).
    t = replace(row[target], parsed="A", confidence=-0.7)
    assert mean([a, None, None, t]) != mean([replace(a, parsed="B"), None, None, t])


def test_rows_as_dicts_and_cholesky(fitted: LearnedQuality, test: dict[str, Any]) -> None:
    row = test["answers"][0]
    by_name = fitted.predict(test["queries"][:1], [{"small": row[0], "large": row[2]}])
    by_pos = fitted.predict(test["queries"][:1], [[row[0], None, row[2], None]])
    assert np.array_equal(by_name.mean, by_pos.mean)
    ran = np.array([True, False, True, False])
    chol = fitted.cholesky(ran)
    assert by_pos.cov is not None
    assert np.allclose(chol @ chol.T, by_pos.cov[0], atol=1e-9)


def test_bad_input_names_the_argument(fitted: LearnedQuality, train: dict[str, Any]) -> None:
    q = train["queries"][:1]
    row = list(train["answers"][0])
    with pytest.raises(TypeError, match=r"answers\[0\]\[1\] must be a ModelAnswer"):
        fitted.predict(q, [[row[0], "B", None, None]])
    with pytest.raises(UnknownModelError, match="gigantic"):
        fitted.predict(q, [{"gigantic": row[0]}])
    with pytest.raises(ValueError, match=r"answers\[0\] has 3 entries"):
        fitted.predict(q, [row[:3]])
    with pytest.raises(TypeError, match=r"queries\[0\]"):
        fitted.predict([3.5], [row])
    strict = LearnedQuality(train["models"], require_confidence=True, **SMALL)
    no_conf = [
        [replace(a, confidence=None) if j == 2 else a for j, a in enumerate(r)]
        for r in train["answers"]
    ]
    with pytest.raises(ValueError, match=r"answers\[0\]\[2\]\.confidence"):
        strict.fit(train["queries"], no_conf, train["quality"])
    y = train["quality"].copy()
    y[4, 1] = np.nan
    with pytest.raises(ValueError, match="quality"):
        LearnedQuality(**SMALL).fit(train["queries"], train["answers"], y)
    with pytest.raises(ValueError, match="quality"):
        LearnedQuality(**SMALL).fit(train["queries"], train["answers"], train["quality"] * 2)
    with pytest.raises(ValueError, match=r"answers\[0\]\[0\] is None"):
        LearnedQuality(**SMALL).fit(
            train["queries"], _mask(train["answers"], [1, 2, 3]), train["quality"]
        )
    featured = [{"text": x["text"], "features": {"len": 1.0}} for x in train["queries"]]
    featured[3] = {"text": "t", "features": {"len": math.nan}}
    with pytest.raises(ValueError, match=r"queries\[3\]\['features'\]"):
        LearnedQuality(**SMALL).fit(featured, train["answers"], train["quality"])
    with pytest.raises(RuntimeError, match="not fitted"):
        LearnedQuality().predict(q, [row])
    with pytest.raises(ValueError, match="calibration"):
        LearnedQuality(calibration="magic")


def test_numeric_features_and_groups(train: dict[str, Any], test: dict[str, Any]) -> None:
    def with_extras(logs: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "text": q["text"],
                "features": {"length": len(q["text"]) / 50.0},
                "group": "even" if i % 2 == 0 else "odd",
            }
            for i, q in enumerate(logs["queries"])
        ]

    est = LearnedQuality(train["models"], **SMALL).fit(
        with_extras(train), train["answers"], train["quality"]
    )
    assert est.groups_ == ("even", "odd") and est.n_numeric_ == 1
    out = est.predict(with_extras(test)[:5], _mask(test["answers"][:5], [0]))
    assert out.mean.shape == (5, 4)
    with pytest.raises(ValueError, match=r"queries\[0\] has no 'features'"):
        est.predict(test["queries"][:1], [[None] * 4])


def test_plugs_into_cascade_router(
    fitted: LearnedQuality, train: dict[str, Any], test: dict[str, Any]
) -> None:
    models = list(train["models"])
    cost = PriceTableCost(models, {m: (1e-8, 1e-8 * (j + 1)) for j, m in enumerate(models)})
    cost.fit(train["queries"], train["answers"])

    class TrainRows:
        def predict(self, rows: Any, answers: Any) -> Any:
            return cost.predict([train["queries"][int(r)] for r in rows], answers)

    router = CascadeRouter(
        fitted.cross_fitted(), TrainRows(), models, max_depth=3, quality_bounds=(0.0, 1.0)
    )
    budget = float(np.median(train["cost"].sum(axis=1)) / 4)
    router.fit(
        list(range(len(train["queries"]))),
        train["answers"],
        train["quality"],
        train["cost"],
        budget=budget,
    )
    router.quality_estimator, router.cost_estimator = fitted, cost
    res = router.replay(test["queries"], test["answers"], test["quality"], test["cost"])
    assert res.quality.shape == (160,) and np.all(res.n_run >= 1)
    first = router.next_model(test["queries"][0], [None] * 4)
    assert first in models
    seen: list[ModelAnswer | None] = [None] * 4
    seen[models.index(first)] = test["answers"][0][models.index(first)]
    assert router.next_model(test["queries"][0], seen) in models + [None]


def test_confidence_scale_does_not_matter(train: dict[str, Any], test: dict[str, Any]) -> None:
    """Any increasing score is a confidence: log-probabilities and the probabilities
    themselves give the same estimates (up to the interpolation between CDF knots). A linear
    feature of the raw score would not: a log-probability's range near 0, where most answers
    are, would be squeezed by its long lower tail."""

    def as_prob(rows: list[list[Any]]) -> list[list[Any]]:
        return [[replace(a, confidence=math.exp(a.confidence)) for a in row] for row in rows]

    rng = np.random.default_rng(0)
    keep = rng.random((len(test["answers"]), len(test["models"]))) < 0.5

    def masked(rows: list[list[Any]]) -> list[list[Any]]:
        return [[a if r else None for a, r in zip(row, m)] for row, m in zip(rows, keep)]

    log_est = LearnedQuality(train["models"], seed=0, **SMALL).fit(
        train["queries"], train["answers"], train["quality"]
    )
    prob_est = LearnedQuality(train["models"], seed=0, **SMALL).fit(
        train["queries"], as_prob(train["answers"]), train["quality"]
    )
    a = log_est.predict(test["queries"], masked(test["answers"])).mean
    b = prob_est.predict(test["queries"], masked(as_prob(test["answers"]))).mean
    diff = np.abs(a - b)
    assert diff.mean() < 0.002 and diff.max() < 0.05


def test_penalty_counts_queries_not_run_set_copies(train: dict[str, Any]) -> None:
    """Every training query appears under many run-sets; each weighs 1 in total, so more
    random run-sets do not weaken the post-hoc penalty (the weights would grow ~30% here)."""
    settings = {**SMALL, "uncertainty_scale": 1.0}

    def weight_norm(n_random_runsets: int) -> float:
        est = LearnedQuality(
            train["models"], seed=0, **{**settings, "n_random_runsets": n_random_runsets}
        ).fit(train["queries"], train["answers"], train["quality"])
        return float(np.hypot(np.linalg.norm(est.W_[-1]), np.linalg.norm(est.w_extra_[-1])))

    assert weight_norm(16) / weight_norm(1) == pytest.approx(1.0, abs=0.1)


def test_prepared_decider_decides_as_next_model(
    fitted: LearnedQuality, train: dict[str, Any], test: dict[str, Any]
) -> None:
    """LearnedQuality follows the run-set protocol: the decider holds its Σ_R per run-set and
    decides as the unprepared path (full estimates, a Cholesky per call) does."""
    models = list(train["models"])
    cost = PriceTableCost(models, {m: (1e-8, 1e-8 * (j + 1)) for j, m in enumerate(models)})
    cost.fit(train["queries"], train["answers"])
    router = CascadeRouter(fitted, cost, models, max_depth=3, quality_bounds=(0.0, 1.0))
    router.set_lambdas([2e6, 1e6, 5e5], lambdas_expensive=[1e6, 5e5, 2e5], gamma=0.5)
    router.prepare()
    table = router.runset_table_
    assert table is not None and table.complete and table.runsets.shape == (15,)  # |R| <= 3
    lams = router._check_fitted()
    rng = np.random.default_rng(0)
    for i in range(40):
        query, row = test["queries"][i], test["answers"][i]
        keep = rng.choice(4, int(rng.integers(0, 4)), replace=False).tolist()
        answers = [a if j in keep else None for j, a in enumerate(row)]
        est, cst = router._estimate([query], [answers])
        want = router._plan(query, router._check_state(answers), est, cst, frozenset(), lams)
        assert router.plan(query, answers) == want
