"""The simulated RouterBench estimators (docs/algorithm.md §13) and the real-data estimators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score

from cascade_routing.estimators import RUN_VARIANCE, TwoPhaseCost, TwoPhaseQuality
from cascade_routing.experiments.datasets import Dataset, load, load_routerbench
from cascade_routing.experiments.metrics import as_percent, linear_baseline_auc
from cascade_routing.experiments.published import PAPER_AUC, REFERENCE_SUBSET_AUC
from cascade_routing.experiments.real_estimators import confidence_estimates, swebench_estimates
from cascade_routing.experiments.settings import NOISE_LEVELS, PAPER_POOLS
from cascade_routing.experiments.simulation import (
    routerbench_protocol,
    routerbench_run,
    simulate_estimates,
    simulate_signals,
)
from cascade_routing.experiments.tables import TwoPhaseTables

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def routerbench() -> Dataset:
    folder = SHARED / "routerbench_subset"
    if not folder.is_dir():
        pytest.skip(f"shared data folder {folder} is not present")
    return load_routerbench(folder)


def _toy_truth(n=500, k=3, seed=0):
    rng = np.random.default_rng(seed)
    quality = (rng.random((n, k)) < np.linspace(0.4, 0.9, k)).astype(float)
    cost = rng.gamma(2.0, np.geomspace(1e-4, 1e-2, k), size=(n, k))
    return quality, cost


# --------------------------------------------------------------------------- the protocol


def test_protocol_counts_on_routerbench_subset(routerbench):
    assert routerbench.n_queries == 3150 and routerbench.n_dropped == 28
    train, test, models = routerbench_protocol(routerbench, PAPER_POOLS[3])
    assert (len(train), len(test)) == (157, 2993)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(3150))
    assert sorted(models) == sorted(PAPER_POOLS[3])
    cols = [routerbench.models.index(m) for m in models]
    mean_cost = routerbench.cost[train][:, cols].mean(axis=0)
    assert np.all(np.diff(mean_cost) > 0)


def test_bundled_routerbench_gives_the_same_protocol(routerbench):
    bundled = load("routerbench")
    for n in (3, 5, 11):
        a = routerbench_protocol(bundled, PAPER_POOLS[n])
        b = routerbench_protocol(routerbench, PAPER_POOLS[n])
        np.testing.assert_array_equal(a[0], b[0])
        assert a[2] == b[2]


def test_pools_use_this_datas_column_names(routerbench):
    assert len(PAPER_POOLS[3]) == 3 and len(PAPER_POOLS[5]) == 5 and len(PAPER_POOLS[11]) == 11
    assert set(PAPER_POOLS[3]) < set(PAPER_POOLS[5]) < set(PAPER_POOLS[11])
    assert set(PAPER_POOLS[11]) == set(routerbench.models)


def test_linear_baseline_matches_the_reference_on_the_subset(routerbench):
    # docs/algorithm.md §14: the reference's "linear" row on routerbench_subset (3 and 5 models)
    for n in (3, 5):
        run = routerbench_run(routerbench, PAPER_POOLS[n], "low")
        test = run.dataset.subset(run.test_rows)
        value = as_percent(linear_baseline_auc(test.mean_cost(), test.mean_quality()))
        assert value == pytest.approx(REFERENCE_SUBSET_AUC["linear"][f"{n}L"], abs=0.006)


def test_paper_tables_are_complete():
    for table, configs in ((PAPER_AUC, 9), (REFERENCE_SUBSET_AUC, 6)):
        assert set(table) == {
            "linear",
            "routing",
            "threshold cascade",
            "optimal cascade",
            "cascade routing",
        }
        assert all(len(row) == configs for row in table.values())
    assert PAPER_AUC["cascade routing"]["11L"] == 87.24


# --------------------------------------------------------------------------- the simulation


def _reference_signals(quality, cost, noise, seed):
    """The reference's loops (numpy.random.seed + one numpy.random.normal per scalar)."""
    qa, qp, ca, cp = noise
    np.random.seed(seed)
    cost_sig = np.array(
        [
            [[float(v + np.random.normal(0, ca)), float(v + np.random.normal(0, cp))] for v in row]
            for row in cost
        ]
    )
    q_sig = np.array(
        [[[np.random.normal(v, qa), np.random.normal(v, qp)] for v in row] for row in quality]
    )
    return cost_sig, q_sig


def test_signals_follow_the_reference_draw_order():
    quality, cost = _toy_truth(n=60, k=4)
    for level in ("low", "high"):
        cost_sig, q_sig = _reference_signals(quality, cost, NOISE_LEVELS[level], 0)
        raw = simulate_signals(quality, cost, level, seed=0)
        np.testing.assert_array_equal(raw.ante_cost, cost_sig[:, :, 0])
        np.testing.assert_array_equal(raw.post_cost, cost_sig[:, :, 1])
        np.testing.assert_array_equal(raw.ante_quality, q_sig[:, :, 0])
        np.testing.assert_array_equal(raw.post_quality, q_sig[:, :, 1])


def test_estimates_match_a_reference_style_calibration():
    quality, cost = _toy_truth(n=80, k=3, seed=1)
    cost_sig, q_sig = _reference_signals(quality, cost, NOISE_LEVELS["medium"], 5)
    est = simulate_estimates(quality, cost, "medium", seed=5)
    for j in range(3):
        for s, (table, truth) in enumerate(((q_sig, quality), (cost_sig, cost))):
            for phase, got in (
                (0, (est.ante_quality, est.ante_cost)[s]),
                (1, (est.post_quality, est.post_cost)[s]),
            ):
                x = table[:, j, phase].reshape(-1, 1)
                want = LinearRegression().fit(x, truth[:, j]).predict(x)
                np.testing.assert_allclose(got[:, j], want, rtol=1e-12, atol=1e-15)
        sd = np.std(est.ante_quality[:, j] - est.post_quality[:, j])
        np.testing.assert_allclose(est.ante_var[:, j], sd**2, rtol=1e-12)
    np.testing.assert_array_equal(est.post_var, RUN_VARIANCE)


@pytest.mark.parametrize("level", sorted(NOISE_LEVELS))
def test_signals_have_the_documented_noise(routerbench, level):
    run = routerbench_run(routerbench, PAPER_POOLS[11], level)
    data = run.dataset
    raw = simulate_signals(data.quality, data.cost, level, seed=0)
    q_ante, q_post, c_ante, c_post = NOISE_LEVELS[level]
    n = data.quality.size  # 3150 x 11 draws per signal: sampling error of the sd ~ 0.4 %
    for signal, truth, sd in (
        (raw.ante_quality, data.quality, q_ante),
        (raw.post_quality, data.quality, q_post),
        (raw.ante_cost, data.cost, c_ante),
        (raw.post_cost, data.cost, c_post),
    ):
        noise = signal - truth
        assert np.std(noise) == pytest.approx(sd, rel=5 / np.sqrt(2 * n))
        assert abs(np.mean(noise)) < 5 * sd / np.sqrt(n)
        # independent across signals, models and rows: no lag-1 correlation within a row
        flat = noise.ravel()
        assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 5 / np.sqrt(n)


def test_more_noise_means_worse_estimates(routerbench):
    corr = {}
    for level in ("low", "medium", "high"):
        run = routerbench_run(routerbench, PAPER_POOLS[3], level)
        est, truth = run.estimates, run.dataset.quality
        corr[level] = np.mean(
            [np.corrcoef(est.ante_quality[:, j], truth[:, j])[0, 1] for j in range(3)]
        )
        # post-hoc (less noise) beats ex-ante at every level
        post = np.mean([np.corrcoef(est.post_quality[:, j], truth[:, j])[0, 1] for j in range(3)])
        assert post > corr[level]
    assert corr["low"] > corr["medium"] > corr["high"] > 0


def test_calibration_is_unbiased_least_squares(routerbench):
    run = routerbench_run(routerbench, PAPER_POOLS[5], "medium")
    est, data = run.estimates, run.dataset
    for table, truth in ((est.ante_quality, data.quality), (est.post_cost, data.cost)):
        np.testing.assert_allclose(table.mean(axis=0), truth.mean(axis=0), rtol=1e-9)
        for j in range(data.n_models):
            # residuals of a least-squares fit are orthogonal to the fitted values
            resid = truth[:, j] - table[:, j]
            assert abs(np.dot(resid, table[:, j] - table[:, j].mean())) < 1e-8 * len(resid) * max(
                1e-12, truth[:, j].var()
            )


def test_simulation_is_seeded():
    quality, cost = _toy_truth()
    a = simulate_estimates(quality, cost, "low", seed=3)
    b = simulate_estimates(quality, cost, "low", seed=3)
    c = simulate_estimates(quality, cost, "low", seed=4)
    np.testing.assert_array_equal(a.ante_quality, b.ante_quality)
    assert not np.array_equal(a.ante_quality, c.ante_quality)
    custom = simulate_estimates(quality, cost, NOISE_LEVELS["low"], seed=3)
    np.testing.assert_array_equal(custom.post_cost, a.post_cost)
    with pytest.raises(ValueError, match="noise level"):
        simulate_estimates(quality, cost, "extreme")
    with pytest.raises(ValueError, match="shape"):
        simulate_estimates(quality, cost[:, :2], "low")


def test_run_layout_and_estimators(routerbench):
    run = routerbench_run(routerbench, PAPER_POOLS[3], "low")
    train, _, models = routerbench_protocol(routerbench, PAPER_POOLS[3])
    assert run.dataset.models == tuple(models)
    np.testing.assert_array_equal(run.train_rows, np.arange(157))
    np.testing.assert_array_equal(run.test_rows, np.arange(157, 3150))
    np.testing.assert_array_equal(run.dataset.query_ids[:157], routerbench.query_ids[train])
    quality_est = run.estimates.quality_estimator()
    cost_est = run.estimates.cost_estimator()
    assert isinstance(quality_est, TwoPhaseQuality) and isinstance(cost_est, TwoPhaseCost)
    answers = [[None, "x", None], [None, None, None]]
    got = quality_est.predict([5, 200], answers)
    assert got.mean[0, 1] == run.estimates.post_quality[5, 1]
    assert got.mean[0, 0] == run.estimates.ante_quality[5, 0]
    assert got.var[0, 1] == RUN_VARIANCE and got.var[1, 2] == run.estimates.ante_var[200, 2]


def test_cost_estimator_clips_negative_costs():
    z = np.zeros((2, 1))
    tables = TwoPhaseTables(z, z, z, z, np.array([[-1e-5], [2e-4]]), np.array([[1e-4], [2e-4]]))
    clipped = tables.cost_estimator()
    assert clipped.ante[0, 0] == 0.0 and clipped.ante[1, 0] == 2e-4
    with pytest.raises(ValueError, match="non-negative"):
        tables.cost_estimator(clip_negative=False)


# --------------------------------------------------------------------------- real-data estimators


def _confidence_toy(n=600, seed=0):
    rng = np.random.default_rng(seed)
    k = 2
    skill = np.array([0.0, 1.5])
    latent = rng.normal(size=(n, k)) + skill
    quality = (latent > 0.3).astype(float)
    confidence = -np.exp(-(latent + rng.normal(scale=0.3, size=(n, k))))  # log-prob-like, < 0
    # some confidences could not be extracted: always wrong answers there
    missing = rng.random((n, k)) < 0.05
    confidence[missing] = -np.inf
    quality[missing] = 0.0
    groups = np.where(rng.random(n) < 0.5, "easy", "hard")
    chars = rng.integers(50, 500, n).astype(float)
    cost = np.column_stack([chars * 1e-6, chars * 5e-6])
    return Dataset(
        "toy",
        ("small", "big"),
        quality,
        cost,
        confidence,
        groups,
        features={"prompt_chars": chars},
    ), missing


def test_confidence_estimates_calibrate_and_handle_minus_inf():
    ds, missing = _confidence_toy()
    train = np.arange(300)
    test = np.arange(300, 600)
    est = confidence_estimates(ds, train)
    assert est.n_queries == 600 and np.all(np.isfinite(est.post_quality))
    for j in range(2):
        auroc = roc_auc_score(ds.quality[test, j], est.post_quality[test, j])
        assert auroc > 0.85
        # calibrated on train: mean prediction ~ train accuracy
        assert est.post_quality[train, j].mean() == pytest.approx(
            ds.quality[train, j].mean(), abs=0.02
        )
        # -inf rows (always wrong here) get a low probability
        assert est.post_quality[missing[:, j], j].max() < 0.2
    np.testing.assert_array_equal(est.post_cost, ds.cost)
    np.testing.assert_array_equal(est.post_var, RUN_VARIANCE)
    diff = est.ante_quality[train] - est.post_quality[train]
    np.testing.assert_allclose(est.ante_var[0], diff.var(axis=0))
    # cost is proportional to prompt length here, so the ratio estimator is exact
    np.testing.assert_allclose(est.ante_cost, ds.cost, rtol=1e-9)
    flat = confidence_estimates(ds, train, scale_cost_by_prompt_length=False)
    np.testing.assert_allclose(flat.ante_cost[0], ds.cost[train].mean(axis=0))


def test_real_estimators_do_not_look_at_test_outcomes():
    ds, _ = _confidence_toy()
    train = np.arange(300)
    flipped_quality = ds.quality.copy()
    flipped_quality[300:] = 1.0 - flipped_quality[300:]
    flipped = Dataset(
        ds.name,
        ds.models,
        flipped_quality,
        ds.cost,
        ds.confidence,
        ds.groups,
        features=ds.features,
    )
    a = confidence_estimates(ds, train)
    b = confidence_estimates(flipped, train)
    np.testing.assert_array_equal(a.ante_quality, b.ante_quality)
    np.testing.assert_array_equal(a.post_quality, b.post_quality)
    np.testing.assert_array_equal(a.ante_var, b.ante_var)
    c = swebench_estimates(ds, train)
    d = swebench_estimates(flipped, train)
    np.testing.assert_array_equal(c.ante_quality, d.ante_quality)
    np.testing.assert_array_equal(c.ante_cost, d.ante_cost)


def test_confidence_estimates_need_confidences():
    ds = Dataset("x", ("a",), quality=[[1.0], [0.0]], cost=[[0.1], [0.2]])
    with pytest.raises(ValueError, match="confidence"):
        confidence_estimates(ds, [0, 1])


def test_swebench_smoothing_hand_case():
    # model 0 resolves 3 of 4 train instances of repo a, 0 of 2 of repo b: overall 3/6 = 0.5
    quality = np.array([[1], [1], [1], [0], [0], [0], [1], [0]], dtype=float)
    groups = np.array(["a", "a", "a", "a", "b", "b", "b", "c"])
    cost = np.arange(1, 9, dtype=float)[:, None]
    ds = Dataset("sw", ("m",), quality, cost, groups=groups)
    train = np.arange(6)
    est = swebench_estimates(ds, train, prior_strength=2.0)
    assert est.ante_quality[0, 0] == pytest.approx((3 + 2 * 0.5) / (4 + 2))  # repo a
    assert est.ante_quality[6, 0] == pytest.approx((0 + 2 * 0.5) / (2 + 2))  # repo b (test row)
    assert est.ante_quality[7, 0] == pytest.approx(0.5)  # repo c: unseen in training
    np.testing.assert_array_equal(est.post_quality, quality)
    np.testing.assert_allclose(est.ante_cost, 3.5)  # mean train cost
    np.testing.assert_array_equal(est.post_cost, cost)
    diff = est.ante_quality[train, 0] - quality[train, 0]
    assert est.ante_var[0, 0] == pytest.approx(diff.var())
    no_prior = swebench_estimates(ds, train, prior_strength=0.0)
    assert no_prior.ante_quality[0, 0] == pytest.approx(0.75)


def test_real_estimators_on_shared_data():
    lc_folder = SHARED / "llm_cascades_confidence"
    sw_folder = SHARED / "swebench_verified_bashonly"
    if not (lc_folder.is_dir() and sw_folder.is_dir()):
        pytest.skip("shared data folders are not present")
    from cascade_routing.experiments.datasets import load_llm_cascades, load_swebench

    lc = load_llm_cascades(lc_folder, benchmarks=None)
    train = np.flatnonzero(lc.features["source_split"] == "train")
    test = np.flatnonzero(lc.features["source_split"] == "test")
    est = confidence_estimates(lc, train)
    est.quality_estimator()
    est.cost_estimator(clip_negative=False)
    # the README: raw-confidence AUROC 0.7-0.9 for most models; post-hoc should beat ex-ante
    for j in range(lc.n_models):
        y = lc.quality[test, j]
        assert (
            roc_auc_score(y, est.post_quality[test, j])
            > roc_auc_score(y, est.ante_quality[test, j]) - 0.02
        )
    sw = load_swebench(sw_folder)
    train, _ = sw.split_rows(test_size=0.5, seed=0)
    est = swebench_estimates(sw, train)
    assert np.all((est.ante_quality >= 0) & (est.ante_quality <= 1))
    est.quality_estimator()
    est.cost_estimator(clip_negative=False)
