"""The boundary of the compiled core: what ``_core`` accepts, what it rejects and how.

Binding-level checks only (the kernels' results are compared with the reference elsewhere):
wrong dtype -> TypeError, wrong shape / layout / values -> ValueError, never a crash; arrays
are read in place (read-only and bool masks fine); outputs have the reference's dtypes and
shapes; results do not depend on ``n_threads``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from _backends import require_backend

K, N, NS = 4, 6, 16


@pytest.fixture(scope="module")
def core() -> Any:
    require_backend("cpp")
    from cascade_routing import _core

    return _core


def _search_args(mode: int = 1) -> list[Any]:
    rng = np.random.default_rng(0)
    return [
        rng.uniform(size=K),
        rng.uniform(size=K),
        0.2,
        mode,
        np.full(K, 0.1),
        np.eye(K) * 0.1,
        rng.standard_normal((NS, K)),
        np.zeros(K, np.uint8),
        K,
        False,
        False,
        True,
        False,
        8,
    ]


def _batch_args(mode: int = 1) -> list[Any]:
    rng = np.random.default_rng(1)
    chol = np.ascontiguousarray(np.broadcast_to(np.eye(K) * 0.1, (N, K, K)))
    return [
        rng.uniform(size=(N, K)),
        rng.uniform(size=(N, K)),
        rng.uniform(size=N),
        mode,
        np.full((N, K), 0.1),
        chol,
        rng.standard_normal((NS, K)),
        np.zeros((N, K), np.uint8),
        K,
        False,
        False,
        True,
        np.zeros(N, np.uint8),
        8,
    ]


def _replay_args(strategy: int = 0, use_sd: bool = True) -> list[Any]:
    rng = np.random.default_rng(2)

    def m() -> np.ndarray:
        return rng.uniform(size=(N, K))

    return [
        m(),
        m(),
        m() * 0.1,
        m() * 0.01,
        m(),
        m(),
        m(),
        m(),
        np.array([0.1, 0.05]),
        np.zeros(N, np.uint8),
        rng.standard_normal((NS, K)),
        use_sd,
        strategy,
        np.full(K, 0.5),
        K,
        False,
        False,
        True,
        8,
        False,
    ]


# --------------------------------------------------------------------------- happy path


def test_output_types_and_shapes(core: Any) -> None:
    nm, mask, util, q, c, ev = core.search(*_search_args())
    assert isinstance(nm, int) and isinstance(ev, int)
    assert all(isinstance(x, float) for x in (util, q, c))
    assert mask.dtype == np.uint8 and mask.shape == (K,)

    out = core.search_batch(*_batch_args())
    dtypes = [np.int64, np.uint8, np.float64, np.float64, np.float64, np.int64]
    shapes = [(N,), (N, K), (N,), (N,), (N,), (N,)]
    assert [o.dtype for o in out] == dtypes and [o.shape for o in out] == shapes

    out = core.replay_two_phase(*_replay_args())
    assert [o.dtype for o in out] == [np.int64, np.int64, np.int64, np.float64, np.float64]
    assert [o.shape for o in out] == [(N,), (N,), (N, K), (N,), (N,)]


def test_read_only_inputs_and_bool_masks_are_accepted(core: Any) -> None:
    args = _search_args()
    expected = core.search(*args)
    for i in (0, 1, 4, 6):
        args[i] = args[i].copy()
        args[i].setflags(write=False)
    args[7] = np.zeros(K, bool)
    got = core.search(*args)
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]

    b = _batch_args()
    ref = core.search_batch(*b)
    b[7] = b[7].astype(bool)
    b[12] = b[12].astype(bool)
    for x, y in zip(core.search_batch(*b), ref):
        assert np.array_equal(x, y)


def test_unused_arrays_are_not_inspected(core: Any) -> None:
    args = _search_args(mode=0)
    expected = core.search(*args)
    args[4], args[5], args[6] = None, "unused", np.zeros((0, 0), np.float32)
    got = core.search(*args)
    assert got[0] == expected[0] and got[2:] == expected[2:]
    r = _replay_args(strategy=1)
    r[2] = r[3] = r[8] = r[10] = None  # sd, lambdas and normals are not used by strategy 1
    core.replay_two_phase(*r)


def test_empty_batch(core: Any) -> None:
    b = _batch_args()
    b[0], b[1], b[2] = np.zeros((0, K)), np.zeros((0, K)), np.zeros(0)
    b[4], b[5] = np.zeros((0, K)), np.zeros((0, K, K))
    b[7], b[12] = np.zeros((0, K), np.uint8), np.zeros(0, np.uint8)
    out = core.search_batch(*b, n_threads=4)
    assert [o.shape[0] for o in out] == [0] * 6 and out[1].shape == (0, K)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_results_do_not_depend_on_threads(core: Any, mode: int) -> None:
    rng = np.random.default_rng(mode)
    n, k = 500, 6
    b = _batch_args(mode)
    b[0], b[1], b[2] = rng.uniform(size=(n, k)), rng.uniform(size=(n, k)), rng.uniform(size=n)
    b[4] = np.full((n, k), 0.1)
    b[5] = np.ascontiguousarray(np.broadcast_to(np.eye(k) * 0.1, (n, k, k)))
    b[6] = rng.standard_normal((NS, k))
    b[7] = (rng.random((n, k)) < 0.2).astype(np.uint8)
    b[8] = k
    b[12] = (rng.random(n) < 0.5).astype(np.uint8)
    one = core.search_batch(*b, n_threads=1)
    for t in (2, 3, 0, 1000):
        for x, y in zip(core.search_batch(*b, n_threads=t), one):
            assert np.array_equal(x, y)
    r = _replay_args()
    one = core.replay_two_phase(*r, n_threads=1)
    for t in (2, 0):
        for x, y in zip(core.replay_two_phase(*r, n_threads=t), one):
            assert np.array_equal(x, y)


# --------------------------------------------------------------------------- TypeError


@pytest.mark.parametrize("bad", [np.float32, np.int64, np.complex128, ">f8", object])
def test_wrong_dtype_is_a_type_error(core: Any, bad: Any) -> None:
    args = _search_args()
    args[0] = args[0].astype(bad)
    with pytest.raises(TypeError, match="quality.*float64"):
        core.search(*args)
    b = _batch_args()
    b[2] = b[2].astype(bad)
    with pytest.raises(TypeError, match="lam"):
        core.search_batch(*b)
    r = _replay_args()
    r[6] = r[6].astype(bad)
    with pytest.raises(TypeError, match="true_quality"):
        core.replay_two_phase(*r)


def test_wrong_mask_dtype_and_non_arrays_are_type_errors(core: Any) -> None:
    args = _search_args()
    args[7] = np.zeros(K, np.int64)
    with pytest.raises(TypeError, match="ran.*uint8"):
        core.search(*args)
    args = _search_args()
    args[1] = [0.1] * K
    with pytest.raises(TypeError, match="cost.*numpy array"):
        core.search(*args)
    b = _batch_args()
    b[12] = np.zeros(N, np.float64)
    with pytest.raises(TypeError, match="prefer_expensive"):
        core.search_batch(*b)
    with pytest.raises(TypeError):
        core.search(*_search_args()[:-1])  # missing argument
    with pytest.raises(TypeError):
        core.search_batch(*_batch_args(), n_threads="2")


# --------------------------------------------------------------------------- ValueError


@pytest.mark.parametrize(
    "index, value, match",
    [
        (0, np.zeros(0), "quality"),  # no model
        (0, np.zeros(65), "quality"),  # more than MAX_MODELS
        (0, np.zeros((K, 1)), "quality"),
        (1, np.zeros(K + 1), "cost"),
        (4, np.zeros(K - 1), "sd"),
        (6, np.zeros((NS, K + 1)), "normals"),
        (6, np.zeros((0, K)), "normals"),
        (7, np.zeros(K + 1, np.uint8), "ran"),
        (3, 3, "mode"),
        (3, -1, "mode"),
        (13, 16, "digits"),
        (13, -2, "digits"),
    ],
)
def test_bad_shapes_and_options_are_value_errors(
    core: Any, index: int, value: Any, match: str
) -> None:
    args = _search_args()
    args[index] = value
    with pytest.raises(ValueError, match=match):
        core.search(*args)


def test_bad_batch_and_replay_shapes_are_value_errors(core: Any) -> None:
    for i, v, m in [
        (1, np.zeros((N, K + 1)), "cost"),
        (2, np.zeros(N + 1), "lam"),
        (4, np.zeros((N, K - 1)), "sd"),
        (7, np.zeros((N + 1, K), np.uint8), "ran"),
        (12, np.zeros(N - 1, np.uint8), "prefer_expensive"),
    ]:
        b = _batch_args()
        b[i] = v
        with pytest.raises(ValueError, match=m):
            core.search_batch(*b)
    b = _batch_args(mode=2)
    b[5] = np.zeros((N, K, K + 1))
    with pytest.raises(ValueError, match="chol"):
        core.search_batch(*b)
    with pytest.raises(ValueError, match="n_threads"):
        core.search_batch(*_batch_args(), n_threads=-1)

    for i, v, m in [
        (1, np.zeros((N, K + 1)), "post_quality"),
        (8, np.zeros(0), "lambdas"),
        (3, np.zeros((N + 1, K)), "post_sd"),
        (12, 2, "strategy"),
    ]:
        r = _replay_args()
        r[i] = v
        with pytest.raises(ValueError, match=m):
            core.replay_two_phase(*r)
    r = _replay_args(strategy=1)
    r[13] = np.zeros(K - 2)
    with pytest.raises(ValueError, match="thresholds"):
        core.replay_two_phase(*r)


def test_non_contiguous_and_unaligned_are_value_errors(core: Any) -> None:
    args = _search_args()
    args[0] = np.repeat(args[0], 2)[::2]  # strided view
    with pytest.raises(ValueError, match="C-contiguous.*ascontiguousarray"):
        core.search(*args)
    b = _batch_args()
    b[0] = np.asfortranarray(b[0])
    with pytest.raises(ValueError, match="quality"):
        core.search_batch(*b)
    buf = np.zeros(K * 8 + 1, np.uint8)
    args = _search_args()
    args[1] = np.frombuffer(buf.data, np.float64, count=K, offset=1)
    with pytest.raises(ValueError, match="aligned"):
        core.search(*args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_value_errors(core: Any, bad: float) -> None:
    for mode, index in [(0, 0), (1, 1), (1, 4), (1, 6), (2, 5)]:
        args = _search_args(mode)
        args[index] = args[index].copy()
        args[index].flat[0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            core.search(*args)
    args = _search_args()
    args[2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        core.search(*args)
    b = _batch_args()
    b[0][3, 1] = bad
    with pytest.raises(ValueError, match=r"row 3"):
        core.search_batch(*b, n_threads=2)
    r = _replay_args()
    r[0][2, 0] = bad
    with pytest.raises(ValueError, match=r"row 2"):
        core.replay_two_phase(*r)
    with pytest.raises(ValueError, match="cov"):
        core.cholesky_psd(np.array([[1.0, bad], [bad, 1.0]]))


def test_extreme_options_do_not_crash(core: Any) -> None:
    for depth in (-(2**63), -1, 0, 1, 64, 2**63 - 1):
        args = _search_args()
        args[8] = depth
        core.search(*args)
        r = _replay_args()
        r[14] = depth
        core.replay_two_phase(*r)
    for digits in (-1, 0, 15):
        args = _search_args()
        args[13] = digits
        core.search(*args)
    args = _search_args()
    args[7] = np.full(K, 255, np.uint8)  # any nonzero value means "run"
    nm, mask, *_ = core.search(*args)
    assert nm == -1 and np.array_equal(mask, args[7])


# --------------------------------------------------------------------------- quality bounds


def test_quality_bounds_are_trailing_arguments(core: Any) -> None:
    """``lower`` / ``upper`` default to -inf / inf (every older positional call still works),
    may be given by position or keyword, and ``n_threads`` is keyword-only (so that an old
    positional ``n_threads`` cannot silently become a bound)."""
    inf = np.inf
    for mode in (0, 1, 2):
        args = _search_args(mode)
        free = core.search(*args)
        for same in (core.search(*args, -inf, inf), core.search(*args, lower=-inf, upper=inf)):
            assert same[0] == free[0] and same[2:] == free[2:]
        pos = core.search(*args, 0.2, 0.7)
        kw = core.search(*args, upper=0.7, lower=0.2)
        assert pos[0] == kw[0] and pos[2:] == kw[2:] and np.array_equal(pos[1], kw[1])
        assert 0.2 <= pos[3] <= 0.7
        b = _batch_args(mode)
        for x, y in zip(core.search_batch(*b, -inf, inf, n_threads=2), core.search_batch(*b)):
            assert np.array_equal(x, y)
    for use_sd in (True, False):
        r = _replay_args(use_sd=use_sd)
        for x, y in zip(core.replay_two_phase(*r, upper=inf), core.replay_two_phase(*r)):
            assert np.array_equal(x, y)
    with pytest.raises(TypeError):
        core.search_batch(*_batch_args(), -inf, inf, 2)
    with pytest.raises(TypeError):
        core.replay_two_phase(*_replay_args(), -inf, inf, 2)
    with pytest.raises(TypeError):
        core.search(*_search_args(), "0", 1.0)


@pytest.mark.parametrize(
    "lower, upper",
    [(np.nan, 1.0), (0.0, np.nan), (1.0, 0.0), (0.5, 0.5), (np.inf, np.inf), (-np.inf, -np.inf)],
)
def test_bad_quality_bounds_are_value_errors(core: Any, lower: float, upper: float) -> None:
    with pytest.raises(ValueError, match="lower < upper"):
        core.search(*_search_args(), lower, upper)
    with pytest.raises(ValueError, match="lower < upper"):
        core.search_batch(*_batch_args(), lower=lower, upper=upper)
    with pytest.raises(ValueError, match="lower < upper"):
        core.replay_two_phase(*_replay_args(), lower, upper, n_threads=2)


def test_huge_quality_bounds_do_not_crash(core: Any) -> None:
    # Bounds far beyond the values are accepted (the engine limits them to +-1e100).
    for lower, upper in [(-1e308, 1e308), (1e308, np.inf), (-np.inf, -1e308), (5e-324, 1e-300)]:
        core.search(*_search_args(0), lower, upper)
        core.search(*_search_args(1), lower, upper)
        core.replay_two_phase(*_replay_args(), lower, upper)


# --------------------------------------------------------------------------- n_threads


@pytest.mark.parametrize("value", [2**40, 2**63, -(2**70), -1, 1025])
def test_out_of_range_threads_are_clean_value_errors(core: Any, value: int) -> None:
    """Any int is accepted by the signature and range-checked, so that a huge value gets a
    message naming n_threads instead of pybind11's list of signatures (issue 10, 7.1)."""
    for call, args in (
        (core.search_batch, _batch_args()),
        (core.replay_two_phase, _replay_args()),
    ):
        with pytest.raises(ValueError, match=r"n_threads must be between 0 .* and 1024") as e:
            call(*args, n_threads=value)
        assert "incompatible function arguments" not in str(e.value)
    with pytest.raises(ValueError, match="n_threads"):
        core.threads_used(value, 10)


@pytest.mark.parametrize("value", [1.0, True, "2", None])
def test_non_integer_threads_are_type_errors(core: Any, value: Any) -> None:
    with pytest.raises(TypeError, match="n_threads must be an int"):
        core.search_batch(*_batch_args(), n_threads=value)
    with pytest.raises(TypeError, match="n_threads must be an int"):
        core.replay_two_phase(*_replay_args(), n_threads=value)


def test_numpy_integer_threads_are_accepted(core: Any) -> None:
    b = _batch_args()
    for x, y in zip(core.search_batch(*b, n_threads=np.int64(2)), core.search_batch(*b)):
        assert np.array_equal(x, y)
    assert core.MAX_THREADS == 1024


def test_threads_are_capped_at_cores_and_rows(core: Any) -> None:
    """More threads than cores are never started (issue 10, 4.3): each costs a workspace."""
    import os

    cores = os.cpu_count() or 1
    assert core.threads_used(0, 10**6) == cores
    assert core.threads_used(core.MAX_THREADS, 10**6) == cores
    assert core.threads_used(1, 10**6) == 1
    assert core.threads_used(cores, 10**6) == cores
    assert core.threads_used(core.MAX_THREADS, 1) == 1
    assert core.threads_used(0, 0) == 1
    # The largest accepted value still gives the answers of one thread.
    b = _batch_args()
    for x, y in zip(core.search_batch(*b, n_threads=core.MAX_THREADS), core.search_batch(*b)):
        assert np.array_equal(x, y)
