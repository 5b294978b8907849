"""The AUC metric, the single-model hull, the budget grid and the bootstrap.

The metric is docs/algorithm.md §10.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_routing.experiments.metrics import (
    as_percent,
    auc,
    auc_from_queries,
    bootstrap_auc,
    budget_grid,
    linear_baseline_auc,
    upper_hull,
)

# --------------------------------------------------------------------------- auc


def test_auc_flat_curve_scores_its_quality():
    assert auc([0.0, 1.0], [0.7, 0.7], 0.0, 1.0, 0.0) == pytest.approx(0.7)


def test_auc_linear_interpolation_between_points():
    # (0, 0) -> (2, 1): a triangle of area 1 over a width of 2.
    assert auc([0.0, 2.0], [0.0, 1.0], 0.0, 2.0, 0.0) == pytest.approx(0.5)
    # three points: trapezoids 0.5 * (0.2 + 0.6) * 1 + 0.5 * (0.6 + 0.8) * 3 = 2.5 over 4
    assert auc([1.0, 2.0, 5.0], [0.2, 0.6, 0.8], 1.0, 5.0, 0.0) == pytest.approx(2.5 / 4)


def test_auc_extends_flat_after_the_last_point():
    # curve reaches 0.9 at cost 1 and stays there until 4: (0.5*(0.5+0.9)*1 + 0.9*3) / 4
    assert auc([0.0, 1.0], [0.5, 0.9], 0.0, 4.0, 0.0) == pytest.approx((0.7 + 2.7) / 4)


def test_auc_starts_from_the_start_quality_before_the_first_point():
    # single point (0.5, 0.7) on [0, 1] starting from 0.2:
    # 0.5 * (0.2 + 0.7) * 0.5 + 0.7 * 0.5 = 0.225 + 0.35
    assert auc([0.5], [0.7], 0.0, 1.0, 0.2) == pytest.approx(0.575)
    # the start quality is ignored when the first point sits at c_min
    assert auc([0.0, 1.0], [0.4, 0.4], 0.0, 1.0, 0.0) == pytest.approx(0.4)


def test_auc_input_order_does_not_matter():
    x = [3.0, 1.0, 2.0, 0.5]
    y = [0.9, 0.5, 0.8, 0.3]
    order = np.argsort(x)
    sorted_value = auc(np.asarray(x)[order], np.asarray(y)[order], 0.0, 4.0, 0.1)
    for perm in itertools.permutations(range(4)):
        p = list(perm)
        assert auc(np.asarray(x)[p], np.asarray(y)[p], 0.0, 4.0, 0.1) == pytest.approx(
            sorted_value
        )


def test_auc_only_integrates_inside_the_range():
    # line from (-1, 0) to (1, 1): at 0 it is 0.5, so over [0, 1] the mean is 0.75
    assert auc([-1.0, 1.0], [0.0, 1.0], 0.0, 1.0, 0.0) == pytest.approx(0.75)
    # points beyond c_max: line (0, 0) -> (2, 1), over [0, 1] mean 0.25
    assert auc([0.0, 2.0], [0.0, 1.0], 0.0, 1.0, 0.0) == pytest.approx(0.25)


def test_auc_vertical_jump_at_equal_costs():
    # two points at the same cost: the curve jumps from 0.2 up to 0.6 at cost 1
    value = auc([1.0, 1.0, 2.0], [0.6, 0.2, 0.6], 0.0, 2.0, 0.0)
    # [0, 1]: 0 -> 0.2 (area 0.1); [1, 2]: flat 0.6 (area 0.6)
    assert value == pytest.approx(0.35)


def test_auc_rejects_bad_input():
    with pytest.raises(ValueError, match="c_max"):
        auc([0.5], [0.5], 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        auc([0.5, 0.6], [0.5], 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        auc([np.nan], [0.5], 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        auc([], [], 0.0, 1.0, 0.0)


def test_as_percent():
    assert as_percent(0.8086) == pytest.approx(80.86)


# --------------------------------------------------------------------------- hull


def test_hull_excludes_a_dominated_model():
    costs = [1.0, 2.0, 3.0]
    quals = [0.5, 0.8, 0.6]  # the most expensive is worse than a cheaper one
    assert upper_hull(costs, quals).tolist() == [0, 1]


def test_hull_excludes_a_model_below_a_chord():
    costs = [1.0, 2.0, 3.0]
    quals = [0.2, 0.3, 1.0]  # (2, 0.3) lies below the line (1, 0.2) -> (3, 1.0)
    assert upper_hull(costs, quals).tolist() == [0, 2]


def test_hull_keeps_collinear_models():
    costs = [3.0, 1.0, 2.0]
    quals = [0.75, 0.25, 0.5]
    assert upper_hull(costs, quals).tolist() == [1, 2, 0]


def test_hull_ties():
    # same cost: only the better one; identical points: only the first
    assert upper_hull([1.0, 1.0, 2.0], [0.3, 0.4, 0.9]).tolist() == [1, 2]
    assert upper_hull([1.0, 1.0, 2.0], [0.4, 0.4, 0.9]).tolist() == [0, 2]
    # equal quality at a higher cost at the end stays (flat last segment)
    assert upper_hull([1.0, 2.0, 3.0], [0.4, 0.9, 0.9]).tolist() == [0, 1, 2]
    # ... but not in the middle, where it lies below a chord
    assert upper_hull([1.0, 2.0, 3.0], [0.5, 0.5, 0.8]).tolist() == [0, 2]


def _reference_remove_redundant(qualities, costs):
    """The reference's remove_redundant_models, verbatim in logic: the slow oracle."""
    idx = list(range(len(qualities)))
    while True:
        removed = False
        n = len(qualities)
        for i, j, k in itertools.product(range(n), repeat=3):
            if len({i, j, k}) == 3 and costs[i] <= costs[k] <= costs[j]:
                at_k = (qualities[i] - qualities[j]) * (costs[k] - costs[j]) / (
                    costs[i] - costs[j]
                ) + qualities[j]
                if qualities[k] < at_k:
                    removed = True
            if not removed and j != k and costs[j] < costs[k] and qualities[j] > qualities[k]:
                removed = True
            if removed:
                qualities = [q for m, q in enumerate(qualities) if m != k]
                costs = [c for m, c in enumerate(costs) if m != k]
                idx = [x for m, x in enumerate(idx) if m != k]
                break
        if not removed:
            return sorted(idx, key=lambda m: costs[idx.index(m)])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=7, unique=True),
    st.data(),
)
def test_hull_matches_the_reference_on_integer_points(costs, data):
    quals = data.draw(st.lists(st.integers(0, 20), min_size=len(costs), max_size=len(costs)))
    c = np.asarray(costs, dtype=float)
    q = np.asarray(quals, dtype=float)
    expected = _reference_remove_redundant(list(q), list(c))
    assert upper_hull(c, q).tolist() == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 1)), min_size=1, max_size=9))
def test_hull_is_increasing_and_concave(points):
    c = np.array([p[0] for p in points])
    q = np.array([p[1] for p in points])
    h = upper_hull(c, q)
    hc, hq = c[h], q[h]
    assert np.all(np.diff(hc) > 0)
    assert np.all(np.diff(hq) >= 0)
    slopes = np.diff(hq) / np.diff(hc)
    assert np.all(np.diff(slopes) <= 1e-9 * (1 + np.abs(slopes[1:])))
    # no single model lies above the hull curve inside its cost range
    inside = (c >= hc[0]) & (c <= hc[-1])
    assert np.all(q[inside] <= np.interp(c[inside], hc, hq) + 1e-9)
    # the best model is reached
    assert hq[-1] == q.max()


# --------------------------------------------------------------------------- budgets


def test_budget_grid_hand_case():
    costs = [1.0, 2.0, 4.0, 3.0]
    quals = [0.5, 0.7, 0.9, 0.6]  # (3, 0.6) is dominated by (2, 0.7)
    grid = budget_grid(costs, quals, per_segment=3)
    assert grid.tolist() == [1.0, 1.5, 2.0, 3.0, 4.0]


def test_budget_grid_count_and_endpoints():
    costs = [0.1, 0.4, 1.0]
    quals = [0.2, 0.7, 0.9]
    grid = budget_grid(costs, quals)  # 10 per segment, shared endpoints once
    assert grid.size == 2 * 9 + 1
    assert grid[0] == 0.1 and grid[-1] == 1.0 and 0.4 in grid
    assert np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(grid[:10], np.linspace(0.1, 0.4, 10))


def test_budget_grid_single_hull_model():
    # the cheapest model is also the best: nothing to interpolate
    assert budget_grid([1.0, 2.0], [0.9, 0.5]).tolist() == [1.0]
    with pytest.raises(ValueError):
        budget_grid([1.0, 2.0], [0.5, 0.9], per_segment=1)


# --------------------------------------------------------------------------- linear baseline


def test_linear_baseline_hand_case():
    # hull (1, .5) -> (2, .8), then flat to c_max = 3: (0.65 + 0.8) / 2
    assert linear_baseline_auc([1.0, 2.0, 3.0], [0.5, 0.8, 0.6]) == pytest.approx(0.725)
    # the worst single model is expensive here; the curve still starts at the cheapest model
    assert linear_baseline_auc([1.0, 2.0, 3.0], [0.5, 0.8, 0.3]) == pytest.approx(0.725)


def test_linear_baseline_with_a_concave_hull():
    c = [0.0, 1.0, 2.0, 4.0]
    q = [0.0, 0.6, 0.5, 1.0]  # (2, 0.5) is below the chord (1, 0.6) -> (4, 1.0)
    # area: 0.5*0.6*1 + 0.5*(0.6+1.0)*3 = 0.3 + 2.4 over 4
    assert linear_baseline_auc(c, q) == pytest.approx(2.7 / 4)


# --------------------------------------------------------------------------- per query, bootstrap


def _per_query_problem(seed=0, n=400, k=3, b=6):
    rng = np.random.default_rng(seed)
    single_q = (rng.random((n, k)) < np.array([0.5, 0.7, 0.9])[:k]).astype(float)
    single_c = rng.gamma(2.0, np.array([1.0, 3.0, 10.0])[:k], size=(n, k))
    # a "strategy": at budget i, use model 2 on a growing share of queries, else model 0
    share = np.linspace(0, 1, b)
    use = rng.random((b, n)) < share[:, None]
    curve_q = np.where(use, single_q[:, 2], single_q[:, 0])
    curve_c = np.where(use, single_c[:, 2], single_c[:, 0])
    return curve_c, curve_q, single_c, single_q


def test_auc_from_queries_uses_the_means():
    cc, cq, sc, sq = _per_query_problem()
    expected = auc(cc.mean(1), cq.mean(1), sc.mean(0).min(), sc.mean(0).max(), sq.mean(0).min())
    assert auc_from_queries(cc, cq, sc, sq) == pytest.approx(expected)


def test_bootstrap_is_deterministic_under_a_seed_and_varies_across_seeds():
    cc, cq, sc, sq = _per_query_problem()
    a = bootstrap_auc(cc, cq, sc, sq, n_boot=300, seed=7)
    b = bootstrap_auc(cc, cq, sc, sq, n_boot=300, seed=7)
    c = bootstrap_auc(cc, cq, sc, sq, n_boot=300, seed=8)
    assert a == b
    assert a != c
    point = auc_from_queries(cc, cq, sc, sq)
    assert a[0] < point < a[1]
    assert a[1] - a[0] < 0.2


def test_bootstrap_interval_narrows_with_more_queries():
    small = bootstrap_auc(*_per_query_problem(n=100), n_boot=300, seed=0)
    large = bootstrap_auc(*_per_query_problem(n=3000), n_boot=300, seed=0)
    assert large[1] - large[0] < small[1] - small[0]


def test_bootstrap_constant_outcomes_give_a_point_interval():
    n = 50
    sc = np.tile([1.0, 2.0], (n, 1))
    sq = np.tile([0.3, 0.9], (n, 1))
    cc = np.full((1, n), 1.5)
    cq = np.full((1, n), 0.8)
    low, high = bootstrap_auc(cc, cq, sc, sq, n_boot=50)
    expected = auc([1.5], [0.8], 1.0, 2.0, 0.3)
    assert low == pytest.approx(expected) and high == pytest.approx(expected)


def test_bootstrap_resamples_curve_and_single_models_together():
    # Two queries A, B. Single models cost 1 and 2 on both; model 0's quality is 0 on A and
    # 1 on B, model 1's is 1 on both, so the start quality is model 0's resampled mean s.
    # One budget: cost 1.5, quality 0.4 on A and 0.8 on B (mean m). AUC = 0.25 s + 0.75 m.
    # A shared resample gives AA -> 0.3 (p 1/4), AB -> 0.575 (1/2), BB -> 0.85 (1/4), so the
    # 30% and 70% quantiles are both 0.575; independent resamples would spread them.
    sc = np.array([[1.0, 2.0], [1.0, 2.0]])
    sq = np.array([[0.0, 1.0], [1.0, 1.0]])
    cc = np.array([[1.5, 1.5]])
    cq = np.array([[0.4, 0.8]])
    low, high = bootstrap_auc(cc, cq, sc, sq, n_boot=4000, seed=1, alpha=0.6)
    assert low == pytest.approx(0.575) and high == pytest.approx(0.575)
    low, high = bootstrap_auc(cc, cq, sc, sq, n_boot=4000, seed=1, alpha=0.05)
    assert low == pytest.approx(0.3) and high == pytest.approx(0.85)


def test_bootstrap_rejects_mismatched_shapes():
    cc, cq, sc, sq = _per_query_problem()
    with pytest.raises(ValueError, match="n_queries"):
        bootstrap_auc(cc, cq, sc[:-1], sq[:-1])
    with pytest.raises(ValueError, match="must match"):
        bootstrap_auc(cc, cq[:-1], sc, sq)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_auc(cc, cq, sc, sq, n_boot=1)
