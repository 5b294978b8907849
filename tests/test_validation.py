"""The shared validation layer (cascade_routing.validation) and the engine's resource limits:
the work cap of one decision, the relative PSD tolerance and the byte-bounded sample cache."""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from cascade_routing import engine, validation
from cascade_routing.validation import UnknownModelError

# --------------------------------------------------------------------------- the work cap


def _count_candidates(k: int, ran: tuple[int, ...], depth: int) -> int:
    """Supersets of ``ran`` with at most ``depth`` members, counted by enumeration (the empty
    set is no candidate: something must run)."""
    free = [i for i in range(k) if i not in ran]
    smallest = 0 if ran else 1
    return sum(
        1 for size in range(smallest, depth - len(ran) + 1) for _ in combinations(free, size)
    )


@pytest.mark.parametrize(
    ("k", "ran", "depth"), [(1, (), 1), (5, (), 5), (7, (0, 3), 4), (11, (), 3), (9, (2,), 9)]
)
def test_search_work_counts_every_candidate(k: int, ran: tuple[int, ...], depth: int) -> None:
    expected = _count_candidates(k, ran, depth)
    assert engine.search_work(k, len(ran), depth, 1) == expected
    assert engine.search_work(k, len(ran), depth, 128) == expected * 128


@pytest.mark.parametrize(("k", "ran", "depth"), [(5, (), 5), (7, (0, 1), 4), (64, (), 64)])
def test_search_work_of_a_prefix_search_counts_the_prefixes(
    k: int, ran: tuple[int, ...], depth: int
) -> None:
    """A prefix-only search scores each longer prefix (and stopping once a model has run)."""
    expected = (1 if ran else 0) + (depth - len(ran))
    assert engine.search_work(k, len(ran), depth, 1, prefixes_only=True) == expected
    assert (
        engine.search_work(k, len(ran), None, 128, prefixes_only=True)
        == ((1 if ran else 0) + (k - len(ran))) * 128
    )


def test_a_prefix_search_over_64_models_is_within_the_cap() -> None:
    """The optimal cascade over 64 models scores 64 prefixes, not 2^64 supermodels."""
    rng = np.random.default_rng(0)
    q, c = rng.random(64), np.sort(rng.random(64))
    res = cr.search_supermodel(q, c, 0.0, force_order=True, prefixes_only=True, var=q * 0.01)
    assert res.evaluated <= engine.search_work(64, 0, None, 1, prefixes_only=True)
    with pytest.raises(ValueError, match="max_depth"):
        cr.search_supermodel(q, c, 0.0, force_order=True, var=q * 0.01)


def test_unpruned_search_scores_no_more_than_the_work_bound() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        k = int(rng.integers(1, 9))
        q, c = rng.random(k), rng.random(k)
        res = cr.search_supermodel(q, c, 0.0, prune=False, force_order=False)
        assert res.evaluated <= engine.search_work(k, 0, None, 1)


def test_exponential_search_is_refused_before_it_starts() -> None:
    k = 40
    with pytest.raises(ValueError, match="max_depth <= ") as info:
        cr.search_supermodel(np.ones(k), np.ones(k), 0.0)
    assert "max_work" in str(info.value)
    with pytest.raises(ValueError, match="max_depth"):
        cr.search_supermodel_batch(np.ones((2, k)), np.ones((2, k)), 0.0)


def test_suggested_depth_fits_the_cap_and_the_next_does_not() -> None:
    k, n = 64, 128
    deepest = engine.largest_depth_within(k, n, engine.DEFAULT_MAX_WORK)
    assert engine.search_work(k, 0, deepest, n) <= engine.DEFAULT_MAX_WORK
    assert engine.search_work(k, 0, deepest + 1, n) > engine.DEFAULT_MAX_WORK
    res = cr.search_supermodel(
        np.linspace(0, 1, k), np.linspace(0.1, 1, k), 0.5, max_depth=deepest, var=np.full(k, 0.01)
    )
    assert res.next_model is not None


def test_max_work_is_settable_per_call() -> None:
    q, c = [0.1, 0.5, 0.9], [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="max_work=6"):
        cr.search_supermodel(q, c, 0.0, max_work=6)  # 7 non-empty subsets of 3 models
    assert cr.search_supermodel(q, c, 0.0, max_work=7).next_model is not None
    with pytest.raises(TypeError, match="max_work"):
        cr.search_supermodel(q, c, 0.0, max_work=7.0)
    with pytest.raises(ValueError, match="max_work"):
        cr.search_supermodel(q, c, 0.0, max_work=0)


# --------------------------------------------------------------------------- covariance


def test_tiny_indefinite_covariance_is_rejected() -> None:
    # A correlation of 5 is impossible at any scale; an absolute floor used to accept it.
    bad = 1e-9 * np.array([[1.0, 5.0], [5.0, 1.0]])
    with pytest.raises(ValueError, match="positive semi-definite"):
        cr.search_supermodel([0.5, 0.6], [0.1, 0.2], 0.1, cov=bad)
    with pytest.raises(ValueError, match="positive semi-definite"):
        cr.expected_max([0.5, 0.6], cov=bad)


def test_tiny_valid_covariance_is_accepted() -> None:
    good = 1e-9 * np.array([[1.0, 0.5], [0.5, 1.0]])
    assert cr.expected_max([0.5, 0.6], cov=good) >= 0.6 - 1e-12
    validation.check_psd(np.zeros((2, 2)), "cov")  # exact estimates: all eigenvalues zero


def test_rounding_asymmetry_passes_but_real_asymmetry_does_not() -> None:
    cov = np.array([[1.0, 0.3], [0.3 + 1e-14, 1.0]])
    validation.check_psd(cov, "cov")
    with pytest.raises(ValueError, match="symmetric"):
        validation.check_psd(np.array([[1.0, 0.3], [0.2, 1.0]]), "cov")


# --------------------------------------------------------------------------- the sample cache


def test_sample_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "NORMALS_CACHE_BYTES", 1 << 20)
    monkeypatch.setattr(engine, "_normals_cache", type(engine._normals_cache)())
    for seed in range(12):
        engine.standard_normals(16, 2048, seed)  # 256 KiB each
    held = sum(a.nbytes for a in engine._normals_cache.values())
    assert held <= 1 << 20
    assert len(engine._normals_cache) == 4
    # The most recent stay; an evicted one is recomputed identically.
    again = engine.standard_normals(16, 2048, 0)
    assert (16, 2048, 0) in engine._normals_cache
    monkeypatch.setattr(engine, "_normals_cache", type(engine._normals_cache)())
    assert np.array_equal(again, engine.standard_normals(16, 2048, 0))


def test_sample_cache_does_not_confuse_bools_with_ints() -> None:
    engine.standard_normals(1, 128, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        engine.standard_normals(True, 128, 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "exc"),
    [(True, TypeError), (1.0, TypeError), ("3", TypeError), (None, TypeError), (-1, ValueError)],
)
def test_check_int_rejects(value: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="n_things"):
        validation.check_int(value, "n_things", 0)


def test_check_int_accepts_numpy_integers() -> None:
    assert validation.check_int(np.int32(4), "n", 0, 4) == 4


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (True, TypeError),
        ("1", TypeError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (10**400, ValueError),
        (-0.5, ValueError),
    ],
)
def test_check_number_rejects(value: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="budget"):
        validation.check_number(value, "budget", 0.0)


def test_float_array_messages_name_the_argument() -> None:
    with pytest.raises(TypeError, match="quality"):
        validation.float_array(["a"], "quality", 1)
    with pytest.raises(ValueError, match=r"quality must be 2-D \(queries x models\)"):
        validation.float_array([1.0], "quality", 2, layout="queries x models")
    with pytest.raises(
        ValueError, match="quality contains NaN or infinite values; drop those rows"
    ):
        validation.float_array([math.nan], "quality", 1, hint="drop those rows")
    with pytest.raises(ValueError, match="cost must be non-negative"):
        validation.float_array([-1.0], "cost", 1, nonnegative=True)
    with pytest.raises(ValueError, match="beyond"):
        validation.float_array([1e200], "cost", 1)
    out = validation.float_array([-math.inf, 0.5], "logprob", 1, allow_neg_inf=True)
    assert out[0] == -math.inf
    with pytest.raises(ValueError, match=r"\+inf"):
        validation.float_array([math.inf], "logprob", 1, allow_neg_inf=True)


def test_float_array_returns_ready_arrays_without_copy() -> None:
    a = np.arange(4.0)
    assert validation.float_array(a, "a", 1) is a


def test_check_rows() -> None:
    assert validation.check_rows([2, 0], 3, "rows").tolist() == [2, 0]
    assert validation.check_rows(np.array([True, False, True]), 3, "rows").tolist() == [0, 2]
    with pytest.raises(TypeError, match="rows"):
        validation.check_rows([0.5], 3, "rows")
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        validation.check_rows([3], 3, "rows")
    with pytest.raises(ValueError, match="repeat"):
        validation.check_rows([1, 1], 3, "rows", unique=True)
    with pytest.raises(ValueError, match="boolean mask"):
        validation.check_rows(np.array([True]), 3, "rows")


def test_model_names_and_unknown_models() -> None:
    assert validation.check_model_names(["a", "b"]) == ("a", "b")
    for bad in ([], ["a", "a"], ["a", ""], ["a", 3]):
        with pytest.raises(ValueError, match="models"):
            validation.check_model_names(bad)
    with pytest.raises(TypeError, match="models"):
        validation.check_model_names("ab")
    with pytest.raises(ValueError, match="at most 64"):
        validation.check_model_names([f"m{i}" for i in range(65)])
    index = {"a": 0, "b": 1}
    assert validation.model_index(index, "b") == 1
    for catch in (KeyError, ValueError):
        with pytest.raises(catch, match="unknown model 'c'; known models"):
            validation.model_index(index, "c")
    assert issubclass(UnknownModelError, KeyError) and issubclass(UnknownModelError, ValueError)


def test_answers_and_ran_mask() -> None:
    assert validation.ran_mask([["x", None], [None, None]], 2).tolist() == [
        [True, False],
        [False, False],
    ]
    with pytest.raises(ValueError, match=r"answers\[0\] has 1 entries"):
        validation.ran_mask([["x"]], 2)
    with pytest.raises(TypeError, match=r"answers\[0\] must be a sequence"):
        validation.check_answers(["xy"], 1, 2, full=False)
    with pytest.raises(ValueError, match="missing answer"):
        validation.check_answers([["x", None]], 1, 2, full=True)
    with pytest.raises(ValueError, match="answers has 2 rows"):
        validation.check_answers([["x"], ["y"]], 1, 1, full=False)


@pytest.mark.parametrize("backend", ["numpy", "cpp"])
def test_huge_n_threads_is_refused_on_every_backend(backend: str) -> None:
    with cr.use_backend(backend):
        with pytest.raises(ValueError, match="n_threads"):
            cr.search_supermodel_batch([[0.1, 0.2]], [[0.1, 0.2]], 0.1, n_threads=2**40)


def test_cached_options_never_stand_in_for_a_bool_or_float() -> None:
    """Options of plain calls are cached; a bool or float that equals a cached int must still
    be refused, and a cached search must give the uncached answer."""
    q, c = np.array([0.2, 0.6, 0.9]), np.array([1.0, 2.0, 3.0])
    first = cr.search_supermodel(q, c, 0.1, max_depth=1)
    assert cr.search_supermodel(q, c, 0.1, max_depth=1).supermodel == first.supermodel
    with pytest.raises(TypeError, match="max_depth"):
        cr.search_supermodel(q, c, 0.1, max_depth=True)
    with pytest.raises(TypeError, match="max_depth"):
        cr.search_supermodel(q, c, 0.1, max_depth=1.0)
    with pytest.raises(ValueError, match="max_depth"):
        cr.search_supermodel(q, c, 0.1, max_depth=1, ran=[0, 1])
