"""The supermodel search (docs/algorithm.md §3–§4) against a brute-force oracle, pruned against
unpruned, backend against backend, batch against single decisions, and its invariants."""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cascade_routing as cr
from _backends import require_backend
from _cases import (
    MODES,
    assert_same,
    describe,
    draw_bounds,
    draw_max_depth,
    draw_ran,
    draw_values,
    n_candidates,
    random_instance,
)

# --------------------------------------------------------------------------- the oracle


class Oracle(NamedTuple):
    next_model: int | None
    supermodel: tuple[int, ...]
    utility: float
    quality: float
    cost: float
    n_candidates: int


def oracle_search(
    quality: Any,
    cost: Any,
    lam: float,
    *,
    var: Any = None,
    cov: Any = None,
    ran: tuple[int, ...] = (),
    max_depth: int | None = None,
    force_order: bool = True,
    prefixes_only: bool = False,
    prefer: str = "cheapest",
    rounding_digits: int | None = 8,
    n_samples: int = 128,
    seed: int = 0,
    prune: bool = True,
    quality_bounds: tuple[float, float] | None = None,
) -> Oracle:
    """Score every candidate supermodel; written from docs/algorithm.md, not from the kernels.

    Candidates: all ``M ⊇ ran`` with ``|M| <= max_depth`` (``ran`` itself only when it is not
    empty); with ``force_order`` the added models come after every run model; with
    ``prefixes_only`` only prefixes ``m_0 .. m_j``. ``Q(M)`` is the mean over the shared QMC
    rows of ``max_{i in M} Z_i``. The best candidate has the highest rounded utility, then the
    lowest (``prefer="expensive"``: highest) cost, then comes first in the search's visiting
    order: ``ran`` itself, then the added models' sorted tuples in lexicographic order. With
    ``quality_bounds`` every sample (exact: every mean) is clipped first (``np.clip``).
    """
    q = np.asarray(quality, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    k = q.shape[0]
    run = tuple(sorted(ran))
    depth = k if max_depth is None else min(max_depth, k)
    if var is not None or cov is not None:
        u = cr.standard_normals(k, n_samples, seed)
        if var is not None:
            z = q[None, :] + u * np.sqrt(np.asarray(var, dtype=np.float64))[None, :]
        else:
            z = q[None, :] + u @ np.linalg.cholesky(np.asarray(cov, dtype=np.float64)).T
    else:
        z = None
    if quality_bounds is not None:
        if z is None:
            q = np.clip(q, *quality_bounds)
        else:
            z = np.clip(z, *quality_bounds)

    def expected_max(members: list[int]) -> float:
        if z is None:
            return float(q[members].max())
        return float(z[:, members].max(axis=1).mean())

    if prefixes_only:
        added_sets = [tuple(range(len(run), j)) for j in range(len(run), depth + 1)]
    else:
        free = [i for i in range(k) if i not in run and not (force_order and run and i < run[-1])]
        added_sets = sorted(
            added
            for size in range(depth - len(run) + 1)
            for added in itertools.combinations(free, size)
        )
    if not run:
        added_sets = [a for a in added_sets if a]

    scored = []
    for position, added in enumerate(added_sets):
        members = sorted(run + added)
        total = 0.0  # sunk costs first, then the added models (the engine's summation order)
        for i in run + added:
            total += c[i]
        qm = expected_max(members)
        util = qm - lam * total
        key = util if rounding_digits is None else float(np.round(util, rounding_digits))
        tie_cost = total if prefer == "cheapest" else -total
        scored.append(((-key, tie_cost, position), added, tuple(members), util, qm, total))
    _, added, members, util, qm, total = min(scored)
    if not added:
        nxt = None
    elif force_order or prefixes_only:
        nxt = min(added)
    else:
        nxt = min(added, key=lambda i: (c[i], i))
    return Oracle(nxt, members, util, qm, total, len(added_sets))


def _search(kw: dict[str, Any], **extra: Any) -> cr.SearchResult:
    return cr.search_supermodel(**{**kw, **extra})


def _check_oracle(kw: dict[str, Any]) -> None:
    want = oracle_search(**kw)
    for prune in (False, True):
        got = _search(kw, prune=prune)
        msg = f"prune={prune}: engine {got} != oracle {want}\nreproducer: {describe(kw)}"
        assert got.next_model == want.next_model, msg
        assert got.supermodel == want.supermodel, msg
        scale = 1.0 + abs(want.quality) + abs(want.cost) * (1.0 + kw["lam"])
        assert abs(got.utility - want.utility) <= 1e-12 * scale, msg
        assert abs(got.quality - want.quality) <= 1e-12 * scale, msg
        assert abs(got.cost - want.cost) <= 1e-12 * scale, msg
        if not prune:
            assert got.evaluated == want.n_candidates, msg
        else:
            assert got.evaluated <= want.n_candidates, msg


# --------------------------------------------------------------------------- (a) oracle


def test_oracle_small_hand_example(backend: str) -> None:
    # Three models, exact means. Costs 0.1/0.5/1, qualities 0.5/0.7/0.9.
    q, c = [0.5, 0.7, 0.9], [0.1, 0.5, 1.0]
    # lam = 0: every supermodel containing model 2 is best (0.9); the cheapest is {2}.
    r = cr.search_supermodel(q, c, 0.0, force_order=False)
    assert (r.next_model, r.supermodel, r.quality, r.cost) == (2, (2,), 0.9, 1.0)
    # lam = 1: utilities 0.4, 0.2, -0.1: routing to model 0.
    r = cr.search_supermodel(q, c, 1.0)
    assert (r.next_model, r.supermodel) == (0, (0,))
    assert r.utility == pytest.approx(0.4, abs=1e-15)
    # Model 0 ran with post-hoc quality 0.95: stop.
    r = cr.search_supermodel([0.95, 0.7, 0.9], c, 0.1, ran=[0])
    assert (r.next_model, r.supermodel) == (None, (0,))
    # Without force_order the cheapest model of M* \ ran runs first.
    r = cr.search_supermodel([0.1, 0.9, 0.1], [5.0, 0.0, 0.0], 0.0, ran=[2], force_order=False)
    assert r.supermodel == (1, 2) and r.next_model == 1
    # {0,1} and {0,1,2} tie on quality 0.9; prefer picks the cheaper or the dearer.
    q, c = [0.1, 0.9, 0.8], [0.2, 1.0, 0.1]
    r = cr.search_supermodel(q, c, 0.0, ran=[0], force_order=False, prefer="expensive")
    assert r.supermodel == (0, 1, 2) and r.next_model == 2
    r = cr.search_supermodel(q, c, 0.0, ran=[0], force_order=False, prefer="cheapest")
    assert r.supermodel == (0, 1) and r.next_model == 1
    # Equal cost too: the first visited ({0,1} before {0,1,2}) wins either way.
    r = cr.search_supermodel(
        q, [0.2, 1.0, 0.0], 0.0, ran=[0], force_order=False, prefer="expensive"
    )
    assert r.supermodel == (0, 1)


@pytest.mark.parametrize("adversarial", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", MODES)
def test_matches_brute_force_oracle(backend: str, mode: str, adversarial: bool) -> None:
    rng = np.random.default_rng([11, MODES.index(mode), adversarial])
    for _ in range(150):
        kw = random_instance(rng, mode, adversarial=adversarial, k_max=7, well_conditioned=True)
        _check_oracle(kw)


def test_oracle_visiting_order_breaks_exact_ties(backend: str) -> None:
    # lam = 0, equal qualities, zero costs: every candidate ties; the first visited wins.
    k = 5
    q, c = np.full(k, 0.5), np.zeros(k)
    for ran in [(), (3,), (1, 3), (0, 4)]:
        for force_order in (False, True):
            kw = {
                "quality": q,
                "cost": c,
                "lam": 0.0,
                "ran": ran,
                "force_order": force_order,
            }
            _check_oracle(kw)
            got = _search(kw)
            assert got.supermodel == (tuple(sorted(ran)) if ran else (0,))


# --------------------------------------------------------------------------- (b) pruning


@pytest.mark.parametrize("adversarial", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", MODES)
def test_pruned_equals_unpruned(backend: str, mode: str, adversarial: bool) -> None:
    n = 400 if backend == "numpy" else 1000
    rng = np.random.default_rng([22, MODES.index(mode), adversarial])
    seen = set()
    n_pruned = 0
    for _ in range(n):
        kw = random_instance(rng, mode, adversarial=adversarial, k_max=9)
        full = _search(kw, prune=False)
        pruned = _search(kw, prune=True)
        assert_same(pruned, full, kw, "pruned vs unpruned", rtol=0.0)
        assert pruned.evaluated <= full.evaluated, describe(kw)
        expect = n_candidates(
            len(kw["quality"]),
            kw["ran"],
            kw["max_depth"],
            kw["force_order"],
            kw["prefixes_only"],
        )
        assert full.evaluated == expect, describe(kw)
        n_pruned += pruned.evaluated < full.evaluated
        seen.add(
            (
                kw["force_order"],
                kw["prefixes_only"],
                bool(kw["ran"]),
                kw["prefer"] == "cheapest",
                kw["rounding_digits"] is None,
            )
        )
    # Every option took both values, and pruning did cut the search.
    assert all({combo[i] for combo in seen} == {True, False} for i in range(5)), seen
    assert len(seen) >= 20, seen
    assert n_pruned > n // 20


# --------------------------------------------------------------------------- (c) Hypothesis


@st.composite
def hyp_instances(draw: st.DrawFn, modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    k = draw(st.integers(1, 6))
    mode = draw(st.sampled_from(modes))
    unit = st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0))
    q = np.array(draw(st.lists(st.one_of(unit, st.floats(-10.0, 10.0)), min_size=k, max_size=k)))
    c = np.array(draw(st.lists(st.one_of(unit, st.floats(0.0, 5.0)), min_size=k, max_size=k)))
    lam = draw(st.one_of(st.just(0.0), st.floats(0.0, 3.0)))
    kw: dict[str, Any] = {"quality": q, "cost": c, "lam": lam}
    if mode == "var":
        kw["var"] = np.array(
            draw(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 0.5)), min_size=k, max_size=k))
        )
    elif mode == "cov":
        rank = draw(st.integers(1, k + 1))
        a = np.array(
            draw(st.lists(st.floats(-1.0, 1.0), min_size=k * rank, max_size=k * rank))
        ).reshape(k, rank)
        cov = a @ a.T
        kw["cov"] = (cov + cov.T) / 2.0
    for i, j in draw(
        st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), max_size=2)
    ):
        if i != j and mode != "cov":  # duplicate model i into j
            q[j], c[j] = q[i], c[i]
            if mode == "var":
                kw["var"][j] = kw["var"][i]
    prefixes_only = draw(st.booleans())
    if prefixes_only:
        ran = tuple(range(draw(st.integers(0, k))))
    else:
        ran = tuple(sorted(draw(st.sets(st.integers(0, k - 1)))))
    kw.update(
        ran=ran,
        max_depth=draw(st.one_of(st.none(), st.integers(max(1, len(ran)), k + 1))),
        force_order=draw(st.booleans()),
        prefixes_only=prefixes_only,
        prefer=draw(st.sampled_from(["cheapest", "expensive"])),
        rounding_digits=draw(st.sampled_from([8, None, 2, 0])),
        n_samples=draw(st.sampled_from([16, 128])),
        seed=draw(st.integers(0, 3)),
    )
    return kw


@given(kw=hyp_instances())
def test_hypothesis_pruned_equals_unpruned(backend: str, kw: dict[str, Any]) -> None:
    full = _search(kw, prune=False)
    pruned = _search(kw, prune=True)
    assert_same(pruned, full, kw, "pruned vs unpruned", rtol=0.0)
    assert pruned.evaluated <= full.evaluated


@given(kw=hyp_instances(modes=("exact", "var")))
def test_hypothesis_matches_oracle(backend: str, kw: dict[str, Any]) -> None:
    _check_oracle(kw)


# --------------------------------------------------------------------------- (d) backends


@pytest.mark.parametrize("adversarial", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", MODES)
def test_backends_agree(fast_backend: str, mode: str, adversarial: bool) -> None:
    rng = np.random.default_rng([33, MODES.index(mode), adversarial])
    for _ in range(500):
        kw = random_instance(rng, mode, adversarial=adversarial, k_max=9)
        kw["prune"] = bool(rng.random() < 0.7)
        got = _search(kw)
        with cr.use_backend("numpy"):
            want = _search(kw)
        assert_same(got, want, kw, f"{fast_backend} vs numpy", check_evaluated=True)


@pytest.mark.parametrize("mode", ["var", "cov"])
def test_backends_compute_identical_bits(fast_backend: str, mode: str) -> None:
    """The kernels are written to agree bit for bit (same operation order in every backend,
    NumPy's pairwise summation for Q); without that, ties at ``rounding_digits=None`` can be
    broken differently (see test_backends_agree)."""
    rng = np.random.default_rng([35, len(mode)])
    mismatches = []
    for _ in range(100):
        k = int(rng.integers(2, 8))
        kw = draw_values(rng, k, mode)
        kw.update(ran=tuple(range(k)), rounding_digits=None)  # Q of all models
        got = _search(kw)
        with cr.use_backend("numpy"):
            want = _search(kw)
        if (got.quality, got.utility, got.cost) != (
            want.quality,
            want.utility,
            want.cost,
        ):
            mismatches.append((got.quality, want.quality))
    assert not mismatches, (
        f"{len(mismatches)}/100 instances differ from the NumPy reference "
        f"in the last bits, e.g. {mismatches[:3]}"
    )


def test_backends_agree_on_expected_max_with_cov(fast_backend: str) -> None:
    rng = np.random.default_rng(34)
    for _ in range(50):
        k = int(rng.integers(1, 9))
        kw = draw_values(rng, k, "cov", adversarial=bool(rng.random() < 0.5))
        got = cr.expected_max(kw["quality"], cov=kw["cov"])
        with cr.use_backend("numpy"):
            want = cr.expected_max(kw["quality"], cov=kw["cov"])
        assert abs(got - want) <= 1e-12 * (1.0 + abs(want))


# --------------------------------------------------------------------------- (e) batch


def _random_batch(
    rng: np.random.Generator,
    mode: str,
    n: int,
    *,
    adversarial: bool,
    force_order: bool,
    prefixes_only: bool,
) -> tuple[dict[str, Any], list[dict]]:
    """Keyword arguments for one batch call and the equivalent single calls."""
    k = int(rng.integers(1, 8))
    rows = [draw_values(rng, k, mode, adversarial=adversarial) for _ in range(n)]
    rans = [draw_ran(rng, k, prefixes_only) for _ in range(n)]
    n_ran_max = max((len(r) for r in rans), default=0)
    max_depth = draw_max_depth(rng, k, n_ran_max)
    prefer = rng.random(n) < 0.5
    digits = [8, None][int(rng.integers(2))]
    n_samples = int(rng.choice([64, 128]))
    seed = int(rng.integers(0, 3))
    mask = np.zeros((n, k), dtype=bool)
    for r, ran in enumerate(rans):
        mask[r, list(ran)] = True
    common = {
        "max_depth": max_depth,
        "force_order": force_order,
        "prefixes_only": prefixes_only,
        "rounding_digits": digits,
        "n_samples": n_samples,
        "seed": seed,
    }
    batch: dict[str, Any] = dict(
        quality=np.array([row["quality"] for row in rows]).reshape(n, k),
        cost=np.array([row["cost"] for row in rows]).reshape(n, k),
        lam=np.array([row["lam"] for row in rows]),
        ran=mask,
        prefer=prefer,
        **common,
    )
    if mode == "var":
        batch["var"] = np.array([row["var"] for row in rows]).reshape(n, k)
    elif mode == "cov":
        batch["cov"] = np.array([row["cov"] for row in rows]).reshape(n, k, k)
    singles = []
    for r, row in enumerate(rows):
        single = dict(row, ran=rans[r], prefer="expensive" if prefer[r] else "cheapest", **common)
        singles.append(single)
    return batch, singles


def _assert_batch_equal(a: cr.BatchSearchResult, b: cr.BatchSearchResult, what: str) -> None:
    for field in (
        "next_model",
        "supermodel",
        "utility",
        "quality",
        "cost",
        "evaluated",
    ):
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape and x.dtype == y.dtype, f"{what}: {field}"
        assert np.array_equal(x, y), f"{what}: {field} differs at rows {np.flatnonzero(x != y)}"


@pytest.mark.parametrize("options", ["free", "force_order", "prefixes_only"])
@pytest.mark.parametrize("mode", MODES)
def test_batch_equals_loop(backend: str, mode: str, options: str) -> None:
    rng = np.random.default_rng([44, MODES.index(mode), len(options)])
    for trial in range(6):
        n = int(rng.choice([1, 7, 60]))
        batch, singles = _random_batch(
            rng,
            mode,
            n,
            adversarial=trial % 2 == 1,
            force_order=options != "free",
            prefixes_only=options == "prefixes_only",
        )
        prune = trial % 3 != 2
        res = cr.search_supermodel_batch(**batch, prune=prune)
        assert res.supermodel.dtype == np.bool_ and res.next_model.dtype == np.int64
        for r, kw in enumerate(singles):
            one = _search(kw, prune=prune)
            msg = f"row {r}: batch != single {one}\nreproducer: {describe(kw)}"
            assert res.next_model[r] == (-1 if one.next_model is None else one.next_model), msg
            assert tuple(np.flatnonzero(res.supermodel[r])) == one.supermodel, msg
            assert res.utility[r] == one.utility, msg
            assert res.quality[r] == one.quality, msg
            assert res.cost[r] == one.cost, msg
            assert res.evaluated[r] == one.evaluated, msg
        for n_threads in (2, 0, 3, 64):
            _assert_batch_equal(
                cr.search_supermodel_batch(**batch, prune=prune, n_threads=n_threads),
                res,
                f"n_threads={n_threads}",
            )


def test_batch_scalar_lam_and_string_prefer(backend: str) -> None:
    rng = np.random.default_rng(45)
    n, k = 40, 5
    q, c = rng.uniform(size=(n, k)), rng.uniform(size=(n, k))
    var = rng.uniform(0, 0.02, size=(n, k))
    for prefer in ("cheapest", "expensive"):
        res = cr.search_supermodel_batch(q, c, 0.3, var=var, prefer=prefer, force_order=False)
        res_arr = cr.search_supermodel_batch(
            q,
            c,
            np.full(n, 0.3),
            var=var,
            prefer=np.full(n, prefer == "expensive"),
            force_order=False,
        )
        _assert_batch_equal(res, res_arr, prefer)
        for r in range(n):
            one = cr.search_supermodel(
                q[r], c[r], 0.3, var=var[r], prefer=prefer, force_order=False
            )
            assert res.next_model[r] == one.next_model
            assert res.utility[r] == one.utility


@pytest.mark.parametrize("n_threads", [1, 2])
def test_batch_empty_and_single_row(backend: str, n_threads: int) -> None:
    k = 4
    for mode_kw in ({}, {"var": np.zeros((0, k))}, {"cov": np.zeros((0, k, k))}):
        res = cr.search_supermodel_batch(
            np.zeros((0, k)), np.zeros((0, k)), 0.5, n_threads=n_threads, **mode_kw
        )
        assert res.next_model.shape == (0,) and res.supermodel.shape == (0, k)
        assert res.utility.shape == res.quality.shape == res.cost.shape == (0,)
        assert res.evaluated.shape == (0,)
    q, c = np.array([[0.2, 0.9, 0.5, 0.1]]), np.array([[0.1, 0.2, 0.3, 0.4]])
    res = cr.search_supermodel_batch(q, c, 0.1, n_threads=n_threads)
    one = cr.search_supermodel(q[0], c[0], 0.1)
    assert res.next_model.tolist() == [one.next_model]
    assert tuple(np.flatnonzero(res.supermodel[0])) == one.supermodel


# --------------------------------------------------------------------------- (f) properties


@pytest.mark.parametrize("mode", MODES)
def test_result_invariants(backend: str, mode: str) -> None:
    rng = np.random.default_rng([55, MODES.index(mode)])
    for trial in range(300):
        kw = random_instance(rng, mode, adversarial=trial % 2 == 1, k_max=8)
        res = _search(kw, prune=bool(trial % 3))
        k = len(kw["quality"])
        ran = set(kw["ran"])
        members = set(res.supermodel)
        msg = f"{res}\nreproducer: {describe(kw)}"
        assert list(res.supermodel) == sorted(members), msg
        assert ran <= members <= set(range(k)), msg
        depth = k if kw["max_depth"] is None else min(kw["max_depth"], k)
        assert len(members) <= depth, msg
        if not ran:
            # Stopping is never an option before anything ran.
            assert res.next_model is not None, msg
        if res.next_model is None:
            assert members == ran, msg
        else:
            added = members - ran
            assert res.next_model in added, msg
            if kw["force_order"] or kw["prefixes_only"]:
                assert res.next_model == min(added), msg
            else:
                c = kw["cost"]
                assert res.next_model == min(added, key=lambda i: (c[i], i)), msg
        if kw["force_order"] and ran and not kw["prefixes_only"]:
            assert min(members - ran, default=k) > max(ran), msg
        if kw["prefixes_only"]:
            assert res.supermodel == tuple(range(len(members))), msg
        cost = float(np.sum(np.asarray(kw["cost"])[list(res.supermodel)]))
        assert res.cost == pytest.approx(cost, rel=1e-12, abs=1e-12), msg
        assert res.utility == pytest.approx(
            res.quality - kw["lam"] * res.cost, rel=1e-12, abs=1e-12
        ), msg
        if mode == "exact":
            assert res.quality == np.asarray(kw["quality"])[list(res.supermodel)].max(), msg


def test_routing_is_argmax_of_utility(backend: str) -> None:
    rng = np.random.default_rng(66)
    for trial in range(200):
        k = int(rng.integers(1, 12))
        q, c = rng.uniform(size=k), rng.uniform(size=k)
        lam = float(rng.uniform(0, 2))
        digits = [8, None][trial % 2]
        force_order = bool(trial % 3)
        res = cr.search_supermodel(
            q, c, lam, max_depth=1, force_order=force_order, rounding_digits=digits
        )
        best = int(np.argmax(q - lam * c))
        assert res.next_model == best and res.supermodel == (best,)
        # With uncertainty a single model's expected maximum is its sample mean.
        var = rng.uniform(0, 0.05, size=k)
        res = cr.search_supermodel(
            q,
            c,
            lam,
            var=var,
            max_depth=1,
            force_order=force_order,
            rounding_digits=digits,
        )
        u = cr.standard_normals(k, 128, 0)
        single = (q[None, :] + u * np.sqrt(var)[None, :]).mean(axis=0)
        assert res.next_model == int(np.argmax(single - lam * c))
        # The optimal cascade at depth 1 can only run the first model.
        res = cr.search_supermodel(q, c, lam, var=var, max_depth=1, prefixes_only=True)
        assert res.next_model == 0 and res.supermodel == (0,)


@pytest.mark.parametrize("mode", MODES)
def test_strategy_relations(backend: str, mode: str) -> None:
    """More candidates never lower the best (unrounded) utility: optimal cascade <= cascade
    routing with force_order <= cascade routing; routing <= cascade routing; monotone in
    max_depth."""
    rng = np.random.default_rng([77, MODES.index(mode)])
    for trial in range(60):
        kw = draw_values(rng, int(rng.integers(1, 8)), mode, adversarial=trial % 4 == 3)
        k = len(kw["quality"])
        n_ran = int(rng.integers(0, k + 1)) if trial % 2 else 0
        kw.update(ran=tuple(range(n_ran)), rounding_digits=None)
        by_depth = []
        for depth in range(max(1, n_ran), k + 1):
            cascade = _search(kw, max_depth=depth, prefixes_only=True)
            ordered = _search(kw, max_depth=depth, force_order=True)
            free = _search(kw, max_depth=depth, force_order=False)
            msg = f"depth {depth}: {cascade} / {ordered} / {free}\n{describe(kw)}"
            assert cascade.utility <= ordered.utility, msg
            assert ordered.utility <= free.utility, msg
            by_depth.append(free.utility)
        assert all(a <= b for a, b in itertools.pairwise(by_depth)), describe(kw)


def test_lambda_extremes(backend: str) -> None:
    rng = np.random.default_rng(88)
    for _ in range(100):
        k = int(rng.integers(1, 9))
        q, c = rng.uniform(size=k), rng.uniform(0.01, 1, size=k)
        # lam = 0, exact means: the best quality at the lowest cost: the cheapest best model.
        res = cr.search_supermodel(q, c, 0.0, force_order=False)
        best = np.flatnonzero(q == q.max())
        cheapest = int(best[np.argmin(c[best])])
        assert res.quality == q.max() and res.supermodel == (cheapest,)
        # A huge lam: the cheapest single model, with or without uncertainty.
        res = cr.search_supermodel(q, c, 1e6, var=np.full(k, 0.01), force_order=False)
        assert res.supermodel == (int(np.argmin(c)),)
        # A huge lam after models ran: stop.
        ran = tuple(sorted(rng.choice(k, size=int(rng.integers(1, k + 1)), replace=False)))
        res = cr.search_supermodel(q, c, 1e6, ran=ran, force_order=False)
        assert res.next_model is None and res.supermodel == ran


def test_pruning_cuts_the_search(backend: str) -> None:
    """The counter shows pruning at work on workload A (docs/algorithm.md §4), never above the
    number of candidates, and prefixes are never pruned."""
    rng = np.random.default_rng(99)
    k = 11 if backend != "numpy" else 9
    ratios = []
    for _ in range(20):
        q, c = rng.uniform(size=k), rng.uniform(size=k)
        lam = float(rng.uniform())
        kw = {
            "quality": q,
            "cost": c,
            "lam": lam,
            "var": np.full(k, 0.01),
            "force_order": False,
        }
        full = _search(kw, prune=False)
        pruned = _search(kw, prune=True)
        assert full.evaluated == 2**k - 1
        assert_same(pruned, full, kw, "pruned vs unpruned", rtol=0.0)
        ratios.append(pruned.evaluated / full.evaluated)
        cascade = [_search(kw, prune=p, prefixes_only=True).evaluated for p in (False, True)]
        assert cascade == [k, k]
    assert max(ratios) <= 1.0
    assert np.median(ratios) < 0.5, ratios


def test_deterministic_and_seeded(backend: str) -> None:
    rng = np.random.default_rng(111)
    k = 6
    q, c, var = rng.uniform(size=k), rng.uniform(size=k), rng.uniform(0.01, 0.1, size=k)
    a = cr.search_supermodel(q, c, 0.2, var=var, force_order=False, seed=3)
    b = cr.search_supermodel(q, c, 0.2, var=var, force_order=False, seed=3)
    assert a == b
    qualities = {
        cr.search_supermodel(q, c, 0.2, var=var, force_order=False, seed=s).quality
        for s in range(4)
    }
    assert len(qualities) > 1
    # Exact means ignore n_samples and seed.
    assert (
        len(
            {
                cr.search_supermodel(q, c, 0.2, seed=s, n_samples=n)
                for s in range(3)
                for n in (16, 128)
            }
        )
        == 1
    )


def test_evaluated_count_formula() -> None:
    # Sanity of the helper used above (a hand count, independent of the engine).
    assert n_candidates(3, (), None, True, False) == 7
    assert n_candidates(3, (1,), None, True, False) == 2  # {1}, {1,2}
    assert n_candidates(3, (1,), None, False, False) == 4
    assert n_candidates(4, (), 2, False, False) == 4 + 6
    assert n_candidates(4, (0,), None, False, True) == 4  # {0}, {0,1}, {0,1,2}, {0,1,2,3}
    assert n_candidates(4, (), 2, False, True) == 2
    assert n_candidates(5, (0, 1, 2, 3, 4), None, False, False) == 1
    assert math.comb(11, 5) == 462


def test_require_backend_fixture_is_honest(backend: str) -> None:
    require_backend(backend)
    assert cr.backend() == backend
    assert backend in cr.available_backends()


# --------------------------------------------------------------------------- (g) quality bounds
#
# quality_bounds=(lower, upper) clips every quality sample (exact mode: every mean), so
# Q(M) = E[max_{i in M} clip(Z_i)]. Clipping is monotone, so Q stays exactly monotone and
# submodular: pruning must stay exact, and every backend must compute the same bits.


def _bounded(
    rng: np.random.Generator, mode: str, *, adversarial: bool, k_max: int, **kw: Any
) -> dict[str, Any]:
    inst = random_instance(rng, mode, adversarial=adversarial, k_max=k_max, **kw)
    inst["quality_bounds"] = draw_bounds(rng, inst["quality"], adversarial=adversarial)
    return inst


def test_bounds_hand_example(backend: str) -> None:
    # Two probability estimates of 0.8 with sd 0.5: unclipped, E[max] = 0.8 + 0.5/sqrt(pi)
    # = 1.08 > 1 makes running both look worth 0.28; clipped to [0, 1] the gain is 0.18.
    q, c, var = [0.8, 0.8], [0.1, 0.1], [0.25, 0.25]
    free = cr.search_supermodel(q, c, 2.3, var=var, n_samples=4096)
    assert free.supermodel == (0, 1) and free.quality > 1.08
    clipped = cr.search_supermodel(q, c, 2.3, var=var, n_samples=4096, quality_bounds=(0, 1))
    assert clipped.supermodel == (0,) and clipped.next_model == 0
    # Q({0}) = E[clip(Z, 0, 1)] for Z ~ N(0.8, 0.25), in closed form.
    from scipy.stats import norm

    mu, sd = 0.8, 0.5
    a, b = (0.0 - mu) / sd, (1.0 - mu) / sd
    want = mu * (norm.cdf(b) - norm.cdf(a)) + sd * (norm.pdf(a) - norm.pdf(b)) + 1.0 * norm.sf(b)
    assert clipped.quality == pytest.approx(want, abs=0.006 * sd)
    # Exact means are clipped too: a "quality" of 1.3 counts as 1.
    r = cr.search_supermodel([0.95, 1.3], [0.01, 0.5], 0.2, quality_bounds=(0.0, 1.0))
    assert r.supermodel == (0,) and r.quality == 0.95
    r = cr.search_supermodel([0.95, 1.3], [0.01, 0.5], 0.2)
    assert r.supermodel == (1,) and r.quality == 1.3
    # {0, 1} and {1} tie at Q = 1 and cost 0: the first visited wins.
    r = cr.search_supermodel([0.95, 1.3], [0.0, 0.0], 0.1, quality_bounds=(0.0, 1.0))
    assert r.quality == 1.0 and r.supermodel == (0, 1)


@pytest.mark.parametrize("adversarial", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", MODES)
def test_bounds_match_brute_force_oracle(backend: str, mode: str, adversarial: bool) -> None:
    rng = np.random.default_rng([12, MODES.index(mode), adversarial])
    changed = 0
    for _ in range(150):
        kw = _bounded(rng, mode, adversarial=adversarial, k_max=7, well_conditioned=True)
        _check_oracle(kw)
        changed += _search(kw).quality != _search(kw, quality_bounds=None).quality
    assert changed > 30, "the drawn bounds hardly ever clip: the test would prove little"


@pytest.mark.parametrize("adversarial", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", MODES)
def test_bounds_pruned_equals_unpruned(backend: str, mode: str, adversarial: bool) -> None:
    """The pruning lemma stays exact under clipping (Q is still submodular)."""
    n = 300 if backend == "numpy" else 800
    rng = np.random.default_rng([23, MODES.index(mode), adversarial])
    n_pruned = 0
    for _ in range(n):
        kw = _bounded(rng, mode, adversarial=adversarial, k_max=9)
        full = _search(kw, prune=False)
        pruned = _search(kw, prune=True)
        assert_same(pruned, full, kw, "pruned vs unpruned", rtol=0.0)
        assert pruned.evaluated <= full.evaluated, describe(kw)
        n_pruned += pruned.evaluated < full.evaluated
    assert n_pruned > n // 20


@st.composite
def hyp_bounded_instances(draw: st.DrawFn, modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    kw = draw(hyp_instances(modes))
    edges = st.one_of(
        st.sampled_from([0.0, 0.5, 1.0]),
        st.sampled_from(kw["quality"].tolist()),
        st.floats(-2.0, 2.0),
    )
    lower = draw(st.one_of(st.just(-math.inf), edges))
    upper = draw(st.one_of(st.just(math.inf), edges).filter(lambda u: u > lower))
    kw["quality_bounds"] = (lower, upper)
    return kw


@given(kw=hyp_bounded_instances())
def test_hypothesis_bounds_pruned_equals_unpruned(backend: str, kw: dict[str, Any]) -> None:
    full = _search(kw, prune=False)
    pruned = _search(kw, prune=True)
    assert_same(pruned, full, kw, "pruned vs unpruned", rtol=0.0)
    assert pruned.evaluated <= full.evaluated


@given(kw=hyp_bounded_instances(modes=("exact", "var")))
def test_hypothesis_bounds_match_oracle(backend: str, kw: dict[str, Any]) -> None:
    _check_oracle(kw)


@pytest.mark.parametrize("adversarial", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("mode", MODES)
def test_bounds_backends_agree(fast_backend: str, mode: str, adversarial: bool) -> None:
    rng = np.random.default_rng([36, MODES.index(mode), adversarial])
    for _ in range(300):
        kw = _bounded(rng, mode, adversarial=adversarial, k_max=9)
        kw["prune"] = bool(rng.random() < 0.7)
        got = _search(kw)
        with cr.use_backend("numpy"):
            want = _search(kw)
        assert_same(got, want, kw, f"{fast_backend} vs numpy", rtol=0.0, check_evaluated=True)


@pytest.mark.parametrize("mode", MODES)
def test_bounds_backends_compute_identical_bits(fast_backend: str, mode: str) -> None:
    rng = np.random.default_rng([37, MODES.index(mode)])
    for trial in range(100):
        k = int(rng.integers(1, 8))
        kw = draw_values(rng, k, mode, adversarial=trial % 2 == 1)
        kw.update(
            ran=tuple(range(k)),  # Q of all models
            rounding_digits=None,
            quality_bounds=draw_bounds(rng, kw["quality"], adversarial=trial % 2 == 1),
        )
        got = _search(kw)
        with cr.use_backend("numpy"):
            want = _search(kw)
        assert (got.quality, got.utility, got.cost) == (
            want.quality,
            want.utility,
            want.cost,
        ), describe(kw)


def test_bounds_clip_the_same_way_on_every_backend(backend: str) -> None:
    """max(v, b) = b if v < b else v, min(v, b) = b if b < v else v everywhere: a mean of
    -0.0 under a lower bound of 0.0 stays -0.0 (a clip with the operands swapped would give
    +0.0), and NaN-free bounds at +-0.0 change nothing else."""
    for q, bounds in [
        ([-0.0], (0.0, 1.0)),
        ([0.0], (-1.0, -0.0)),
        ([-0.0, -0.0], (-0.0, 1.0)),
    ]:
        r = cr.search_supermodel(q, np.zeros(len(q)), 0.0, ran=[0], quality_bounds=bounds)
        assert r.quality == 0.0 and np.signbit(r.quality) == np.signbit(q[0]), (
            q,
            bounds,
            r,
        )


@pytest.mark.parametrize("mode", MODES)
def test_infinite_bounds_are_no_bounds(backend: str, mode: str) -> None:
    """(-inf, inf), and finite bounds that clip nothing, give exactly the result of None."""
    rng = np.random.default_rng([38, MODES.index(mode)])
    for trial in range(150):
        kw = random_instance(rng, mode, adversarial=trial % 2 == 1, k_max=8)
        kw["prune"] = bool(trial % 3)
        want = _search(kw)
        assert _search(kw, quality_bounds=(-math.inf, math.inf)) == want, describe(kw)
        assert _search(kw, quality_bounds=[-1e100, 1e100]) == want, describe(kw)
    q, v = [0.1, 0.7, 0.4], [0.1, 0.2, 0.3]
    for bounds in [(-math.inf, math.inf), (-1e100, 1e100)]:
        assert cr.expected_max(q, var=v, quality_bounds=bounds) == cr.expected_max(q, var=v)


@pytest.mark.parametrize("options", ["free", "force_order", "prefixes_only"])
@pytest.mark.parametrize("mode", MODES)
def test_bounds_batch_equals_loop(backend: str, mode: str, options: str) -> None:
    rng = np.random.default_rng([46, MODES.index(mode), len(options)])
    for trial in range(4):
        n = int(rng.choice([1, 7, 60]))
        batch, singles = _random_batch(
            rng,
            mode,
            n,
            adversarial=trial % 2 == 1,
            force_order=options != "free",
            prefixes_only=options == "prefixes_only",
        )
        bounds = draw_bounds(rng, batch["quality"], adversarial=trial % 2 == 1)
        prune = trial != 2
        res = cr.search_supermodel_batch(**batch, prune=prune, quality_bounds=bounds)
        for r, kw in enumerate(singles):
            kw["quality_bounds"] = bounds
            one = _search(kw, prune=prune)
            msg = f"row {r}: batch != single {one}\nreproducer: {describe(kw)}"
            assert res.next_model[r] == (-1 if one.next_model is None else one.next_model), msg
            assert tuple(np.flatnonzero(res.supermodel[r])) == one.supermodel, msg
            assert res.utility[r] == one.utility, msg
            assert res.quality[r] == one.quality, msg
            assert res.cost[r] == one.cost, msg
            assert res.evaluated[r] == one.evaluated, msg
        for n_threads in (2, 0):
            _assert_batch_equal(
                cr.search_supermodel_batch(
                    **batch, prune=prune, quality_bounds=bounds, n_threads=n_threads
                ),
                res,
                f"n_threads={n_threads}",
            )


# The replay kernel (the inner loop of fitting lambda) with bounds, against a per-query loop
# of the same backend's search kernel: the compiled replay only recomputes the samples of the
# model that just ran, and those must be clipped like the others.


def _two_phase(rng: np.random.Generator, n: int, k: int) -> dict[str, Any]:
    def m(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, size=(n, k))

    # Estimates spill outside [0, 1] so that bounds (0, 1) clip the means too.
    return {
        "ante_quality": m(-0.2, 1.2),
        "post_quality": m(-0.3, 1.3),
        "ante_sd": m(0.05, 0.6),
        "post_sd": m(0.0, 0.2),
        "ante_cost": m(0.0, 1.0),
        "post_cost": m(0.0, 1.0),
        "true_quality": m(0.0, 1.0),
        "true_cost": m(0.0, 1.0),
    }


def _replay_by_search(
    be: Any,
    d: dict[str, Any],
    lambdas: np.ndarray,
    prefer: np.ndarray,
    normals: np.ndarray,
    use_sd: bool,
    opts: dict[str, Any],
    lower: float,
    upper: float,
) -> tuple[np.ndarray, ...]:
    """``replay_two_phase_kernel``'s documented semantics, one search call per step."""
    n, k = d["ante_quality"].shape
    selected, n_run = np.full(n, -1), np.zeros(n, dtype=np.int64)
    order, cost, quality = np.full((n, k), -1), np.zeros(n), np.zeros(n)
    for r in range(n):
        ran = np.zeros(k, dtype=np.uint8)
        j = 0
        while j < k:
            post = ran != 0
            q = np.where(post, d["post_quality"][r], d["ante_quality"][r])
            c = np.where(post, d["post_cost"][r], d["ante_cost"][r])
            sd = np.where(post, d["post_sd"][r], d["ante_sd"][r]) if use_sd else np.zeros(k)
            lam = float(lambdas[min(j, len(lambdas) - 1)])
            nm = be.search(
                q,
                c,
                lam,
                1 if use_sd else 0,
                sd,
                np.zeros((0, 0)),
                normals,
                ran,
                opts["max_depth"],
                opts["force_order"],
                opts["prefixes_only"],
                opts["prune"],
                bool(prefer[r]),
                opts["digits"],
                lower,
                upper,
            )[0]
            if nm < 0:
                break
            ran[nm] = 1
            order[r, j] = nm
            cost[r] += d["true_cost"][r, nm]
            j += 1
        n_run[r] = j
        if j:
            if opts["select_last"]:
                sel = order[r, j - 1]
            else:
                runs = np.flatnonzero(ran)
                sel = runs[np.argmax(d["post_quality"][r, runs])]
            selected[r], quality[r] = sel, d["true_quality"][r, sel]
    return selected, n_run, order, cost, quality


def _replay_kernel(
    be: Any,
    d: dict[str, Any],
    lambdas: np.ndarray,
    prefer: np.ndarray,
    normals: np.ndarray,
    use_sd: bool,
    opts: dict[str, Any],
    *bounds: float,
    strategy: int = 0,
    n_threads: int = 1,
) -> tuple[np.ndarray, ...]:
    k = d["ante_quality"].shape[1]
    return be.replay_two_phase(
        *(
            d[name]
            for name in (
                "ante_quality",
                "post_quality",
                "ante_sd",
                "post_sd",
                "ante_cost",
                "post_cost",
                "true_quality",
                "true_cost",
            )
        ),
        lambdas,
        prefer,
        normals,
        use_sd,
        strategy,
        np.full(k, 0.6),
        opts["max_depth"],
        opts["force_order"],
        opts["prefixes_only"],
        opts["prune"],
        opts["digits"],
        opts["select_last"],
        *bounds,
        n_threads=n_threads,
    )


@pytest.mark.parametrize("use_sd", [True, False], ids=["sd", "exact"])
def test_bounds_replay_kernel_equals_search_loop(backend: str, use_sd: bool) -> None:
    be = cr._backend.active()
    rng = np.random.default_rng([47, use_sd])
    n_differ = 0
    for trial in range(12):
        k = int(rng.integers(1, 7))
        n = 40
        d = _two_phase(rng, n, k)
        lambdas = rng.uniform(0.0, 0.4, size=int(rng.integers(1, 4)))
        prefer = (rng.random(n) < 0.5).astype(np.uint8)
        normals = cr.standard_normals(k, int(rng.choice([32, 128])), trial % 3)
        prefixes_only = trial % 4 == 3
        opts = {
            "max_depth": int(rng.integers(1, k + 1)),
            "force_order": bool(trial % 2) or prefixes_only,
            "prefixes_only": prefixes_only,
            "prune": trial % 3 != 2,
            "digits": [8, -1][trial % 2],
            "select_last": trial % 5 == 4,
        }
        bounds = [(0.0, 1.0), (0.0, math.inf), (-math.inf, 0.9), (0.3, 0.8)][trial % 4]
        got = _replay_kernel(be, d, lambdas, prefer, normals, use_sd, opts, *bounds)
        want = _replay_by_search(be, d, lambdas, prefer, normals, use_sd, opts, *bounds)
        for name, x, y in zip(("selected", "n_run", "order", "cost", "quality"), got, want):
            assert np.array_equal(x, y), (
                f"trial {trial}: {name} differs at {np.flatnonzero(x != y)}"
            )
        # Threads do not matter, and the bounds did change some decisions.
        for x, y in zip(
            _replay_kernel(be, d, lambdas, prefer, normals, use_sd, opts, *bounds, n_threads=2),
            got,
        ):
            assert np.array_equal(x, y)
        free = _replay_kernel(be, d, lambdas, prefer, normals, use_sd, opts)
        n_differ += int(np.sum(np.any(free[2] != got[2], axis=1)))
        # The threshold cascade does not search: bounds change nothing.
        thr = _replay_kernel(be, d, lambdas, prefer, normals, use_sd, opts, strategy=1)
        thr_b = _replay_kernel(be, d, lambdas, prefer, normals, use_sd, opts, *bounds, strategy=1)
        for x, y in zip(thr, thr_b):
            assert np.array_equal(x, y)
    assert n_differ > 20, n_differ


def test_bounds_replay_kernel_backends_agree(fast_backend: str) -> None:
    rng = np.random.default_rng(48)
    for trial in range(8):
        k = int(rng.integers(2, 7))
        d = _two_phase(rng, 100, k)
        lambdas = rng.uniform(0.0, 0.3, size=3)
        prefer = (rng.random(100) < 0.5).astype(np.uint8)
        normals = cr.standard_normals(k, 128, 0)
        opts = {
            "max_depth": k,
            "force_order": trial % 2 == 0,
            "prefixes_only": False,
            "prune": True,
            "digits": [8, -1][trial % 2],
            "select_last": False,
        }
        use_sd = trial % 4 != 3
        bounds = draw_bounds(rng, d["ante_quality"], adversarial=trial % 2 == 1)
        got = _replay_kernel(
            cr._backend.active(), d, lambdas, prefer, normals, use_sd, opts, *bounds
        )
        want = _replay_kernel(
            cr._backend.get("numpy"), d, lambdas, prefer, normals, use_sd, opts, *bounds
        )
        for x, y in zip(got, want):
            assert np.array_equal(x, y), (trial, bounds)
