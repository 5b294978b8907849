"""Input validation at the boundary (STYLE.md practice 3): a wrong dtype raises TypeError, a bad
shape or value raises ValueError, each naming the argument; nothing else ever escapes, on any
backend, and the compiled module never crashes on garbage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import cascade_routing as cr
from _backends import require_backend

Q = [0.1, 0.5, 0.9]
C = [0.1, 0.2, 0.3]
QB = [[0.1, 0.5, 0.9], [0.3, 0.2, 0.1]]
CB = [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]
NOT_SYM = [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
NOT_PSD = [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
EYE = np.eye(3).tolist()
K_TOO_MANY = cr.MAX_MODELS + 1


def S(**kw: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    """search_supermodel with the valid defaults overridden."""
    return cr.search_supermodel, {"quality": Q, "cost": C, "lam": 0.5, **kw}


def B(**kw: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    return cr.search_supermodel_batch, {"quality": QB, "cost": CB, "lam": 0.5, **kw}


def E(**kw: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    return cr.expected_max, {"mean": Q, **kw}


TYPE_ERRORS = {
    "quality-str": (S(quality=["a", "b", "c"]), "quality"),
    "quality-object": (S(quality=np.array([0.1, None, 0.3], dtype=object)), "quality"),
    "quality-complex": (S(quality=np.array([0.1, 0.5, 0.9]) + 1j), "quality"),
    "quality-dict": (S(quality={"a": 1}), "quality"),
    "cost-str": (S(cost=["x", "y", "z"]), "cost"),
    "cost-complex": (S(cost=[1j, 0, 0]), "cost"),
    "lam-str": (S(lam="0.5"), "lam"),
    "lam-complex": (S(lam=0.5j), "lam"),
    "lam-none": (S(lam=None), "lam"),
    "lam-bool": (S(lam=True), "lam"),
    "var-str": (S(var=["a", "b", "c"]), "var"),
    "var-complex": (S(var=np.ones(3, dtype=complex)), "var"),
    "cov-object": (S(cov=np.array(EYE, dtype=object)), "cov"),
    "cov-str": (S(cov=[["a"] * 3] * 3), "cov"),
    "ran-float": (S(ran=[0.0]), "ran"),
    "ran-str": (S(ran=["0"]), "ran"),
    "ran-object": (S(ran=[None]), "ran"),
    "max_depth-float": (S(max_depth=2.0), "max_depth"),
    "max_depth-str": (S(max_depth="2"), "max_depth"),
    "max_depth-bool": (S(max_depth=True), "max_depth"),
    "rounding_digits-float": (S(rounding_digits=8.0), "rounding_digits"),
    "n_samples-float": (S(var=[0.1] * 3, n_samples=128.0), "n_samples"),
    "seed-str": (S(var=[0.1] * 3, seed="0"), "seed"),
    "seed-float": (S(var=[0.1] * 3, seed=0.0), "seed"),
    "batch-quality-str": (B(quality=[["a"] * 3] * 2), "quality"),
    "batch-lam-str": (B(lam=["a", "b"]), "lam"),
    "batch-lam-complex": (B(lam=np.ones(2) * 1j), "lam"),
    "batch-ran-float": (B(ran=np.zeros((2, 3))), "ran"),
    "batch-ran-str": (B(ran=[["0"] * 3] * 2), "ran"),
    "batch-prefer-int": (B(prefer=np.array([1, 0])), "prefer"),
    "batch-prefer-strs": (B(prefer=["expensive", "cheapest"]), "prefer"),
    "batch-n_threads-float": (B(n_threads=1.0), "n_threads"),
    "batch-n_threads-str": (B(n_threads="2"), "n_threads"),
    "batch-var-complex": (B(var=np.ones((2, 3)) * 1j), "var"),
    "mean-str": (E(mean=["a", "b"]), "mean"),
    "mean-object": (E(mean=np.array([1.0, None])), "mean"),
    "em-var-complex": (E(var=[1j, 1, 1]), "var"),
    "em-n_samples-float": (E(var=[1.0] * 3, n_samples=128.0), "n_samples"),
    "em-seed-float": (E(var=[1.0] * 3, seed=1.5), "seed"),
    # quality_bounds: a (lower, upper) pair of real numbers
    "bounds-scalar": (S(quality_bounds=1.0), "quality_bounds"),
    "bounds-str": (S(quality_bounds="01"), "quality_bounds"),
    "bounds-dict": (S(quality_bounds={0: 0.0, 1: 1.0}), "quality_bounds"),
    "bounds-set": (S(quality_bounds={0.0, 1.0}), "quality_bounds"),
    "bounds-str-entry": (S(quality_bounds=(0.0, "1")), "quality_bounds"),
    "bounds-none-entry": (S(quality_bounds=(None, 1.0)), "quality_bounds"),
    "bounds-bool-entry": (S(quality_bounds=(False, True)), "quality_bounds"),
    "bounds-complex-entry": (S(quality_bounds=(0.0, 1j)), "quality_bounds"),
    "bounds-nested": (S(quality_bounds=([0.0], [1.0])), "quality_bounds"),
    "batch-bounds-scalar": (B(quality_bounds=0.5), "quality_bounds"),
    "em-bounds-str-entry": (
        E(var=[1.0] * 3, quality_bounds=("0", 1)),
        "quality_bounds",
    ),
}

VALUE_ERRORS = {
    # shapes
    "quality-2d": (S(quality=[Q]), "quality"),
    "quality-scalar": (S(quality=0.5), "quality"),
    "quality-empty": (S(quality=[], cost=[]), "quality"),
    "quality-ragged": (S(quality=[[0.1], [0.2, 0.3]]), "quality"),
    "cost-length": (S(cost=[0.1, 0.2]), "cost"),
    "cost-2d": (S(cost=[C]), "cost"),
    "var-length": (S(var=[0.1, 0.1]), "var"),
    "var-2d": (S(var=[[0.1] * 3]), "var"),
    "cov-shape": (S(cov=np.eye(2)), "cov"),
    "cov-1d": (S(cov=[1.0, 1.0, 1.0]), "cov"),
    "var-and-cov": (S(var=[0.1] * 3, cov=EYE), ("var", "cov")),
    # non-finite values
    "quality-nan": (S(quality=[0.1, np.nan, 0.3]), "quality"),
    "quality-inf": (S(quality=[0.1, np.inf, 0.3]), "quality"),
    "cost-inf": (S(cost=[0.1, 0.2, np.inf]), "cost"),
    "var-nan": (S(var=[0.1, np.nan, 0.1]), "var"),
    "cov-inf": (S(cov=[[np.inf, 0, 0], [0, 1, 0], [0, 0, 1]]), "cov"),
    "lam-nan": (S(lam=float("nan")), "lam"),
    "lam-inf": (S(lam=float("inf")), "lam"),
    "lam-array": (S(lam=[0.5]), "lam"),
    "lam-huge-int": (S(lam=10**400), "lam"),
    # negative values
    "cost-negative": (S(cost=[0.1, -0.2, 0.3]), "cost"),
    "var-negative": (S(var=[0.1, -0.1, 0.1]), "var"),
    "lam-negative": (S(lam=-0.5), "lam"),
    # covariances
    "cov-not-symmetric": (S(cov=NOT_SYM), ("cov", "symmetric")),
    "cov-not-psd": (S(cov=NOT_PSD), ("cov", "positive semi-definite")),
    # ran
    "ran-out-of-range": (S(ran=[3]), "ran"),
    "ran-negative": (S(ran=[-1]), "ran"),
    "ran-duplicated": (S(ran=[1, 1]), "ran"),
    "ran-2d": (S(ran=[[0, 1]]), "ran"),
    "ran-mask-length": (S(ran=[True, False]), "ran"),
    "max_depth-below-ran": (S(ran=[0, 1], max_depth=1), "max_depth"),
    "max_depth-zero": (S(max_depth=0), "max_depth"),
    "max_depth-negative": (S(max_depth=-2), "max_depth"),
    # sizes and options
    "k-too-many": (
        S(quality=np.zeros(K_TOO_MANY), cost=np.zeros(K_TOO_MANY)),
        "quality",
    ),
    "n_samples-not-power-of-two": (S(var=[0.1] * 3, n_samples=100), "n_samples"),
    "n_samples-zero": (S(var=[0.1] * 3, n_samples=0), "n_samples"),
    "n_samples-negative": (S(var=[0.1] * 3, n_samples=-128), "n_samples"),
    "n_samples-too-many": (S(var=[0.1] * 3, n_samples=2 * 65536), "n_samples"),
    "seed-negative": (S(var=[0.1] * 3, seed=-1), "seed"),
    "rounding_digits-negative": (S(rounding_digits=-1), "rounding_digits"),
    "rounding_digits-too-many": (S(rounding_digits=16), "rounding_digits"),
    "prefer-unknown": (S(prefer="cheap"), "prefer"),
    "prefer-case": (S(prefer="Expensive"), "prefer"),
    "prefer-none": (S(prefer=None), "prefer"),
    "prefer-bool": (S(prefer=True), "prefer"),
    "prefixes-only-not-prefix": (
        S(prefixes_only=True, ran=[1]),
        ("prefixes_only", "ran"),
    ),
    "prefixes-only-gap": (S(prefixes_only=True, ran=[0, 2]), ("prefixes_only", "ran")),
    # batch
    "batch-quality-1d": (B(quality=Q), "quality"),
    "batch-cost-shape": (B(cost=C), "cost"),
    "batch-lam-length": (B(lam=[0.1, 0.2, 0.3]), "lam"),
    "batch-lam-2d": (B(lam=[[0.1, 0.2]]), "lam"),
    "batch-lam-negative": (B(lam=[0.1, -0.2]), "lam"),
    "batch-lam-nan": (B(lam=[0.1, np.nan]), "lam"),
    "batch-var-shape": (B(var=[0.1] * 3), "var"),
    "batch-cov-shape": (B(cov=EYE), "cov"),
    "batch-cov-not-psd": (B(cov=[EYE, NOT_PSD]), "cov"),
    "batch-cov-not-symmetric": (B(cov=[NOT_SYM, EYE]), "cov"),
    "batch-ran-shape": (B(ran=np.zeros((2, 2), dtype=bool)), "ran"),
    "batch-ran-values": (B(ran=np.array([[0, 2, 0], [0, 0, 0]])), "ran"),
    "batch-prefer-length": (B(prefer=np.array([True])), "prefer"),
    "batch-prefer-unknown": (B(prefer="dear"), "prefer"),
    "batch-prefixes-only": (
        B(prefixes_only=True, ran=np.array([[0, 1, 0], [1, 0, 0]], bool)),
        ("prefixes_only", "ran"),
    ),
    "batch-max_depth-below-ran": (
        B(ran=np.ones((2, 3), bool), max_depth=2),
        "max_depth",
    ),
    "batch-n_threads-negative": (B(n_threads=-1), "n_threads"),
    "batch-k-too-many": (
        B(quality=np.zeros((2, K_TOO_MANY)), cost=np.zeros((2, K_TOO_MANY))),
        "quality",
    ),
    "batch-n_samples": (B(var=np.ones((2, 3)), n_samples=3), "n_samples"),
    # expected_max
    "mean-empty": (E(mean=[]), "mean"),
    "mean-2d": (E(mean=[Q]), "mean"),
    "mean-nan": (E(mean=[0.1, np.nan]), "mean"),
    "em-var-negative": (E(var=[1.0, -1.0, 1.0]), "var"),
    "em-var-length": (E(var=[1.0]), "var"),
    "em-cov-not-psd": (E(cov=NOT_PSD), "cov"),
    "em-cov-not-symmetric": (E(cov=NOT_SYM), "cov"),
    "em-var-and-cov": (E(var=[1.0] * 3, cov=EYE), ("var", "cov")),
    "em-n_samples": (E(var=[1.0] * 3, n_samples=3), "n_samples"),
    "em-seed-negative": (E(var=[1.0] * 3, seed=-3), "seed"),
    # quality_bounds: lower < upper, no NaN, finite values within +-MAX_MAGNITUDE
    "bounds-one-value": (S(quality_bounds=(0.0,)), "quality_bounds"),
    "bounds-three-values": (S(quality_bounds=[0.0, 0.5, 1.0]), "quality_bounds"),
    "bounds-empty": (S(quality_bounds=()), "quality_bounds"),
    "bounds-2d-array": (S(quality_bounds=np.zeros((2, 1))), "quality_bounds"),
    "bounds-0d-array": (S(quality_bounds=np.array(1.0)), "quality_bounds"),
    "bounds-reversed": (
        S(quality_bounds=(1.0, 0.0)),
        ("quality_bounds", "lower < upper"),
    ),
    "bounds-equal": (S(quality_bounds=(0.5, 0.5)), ("quality_bounds", "lower < upper")),
    "bounds-lower-nan": (S(quality_bounds=(np.nan, 1.0)), ("quality_bounds", "NaN")),
    "bounds-upper-nan": (S(quality_bounds=(0.0, np.nan)), ("quality_bounds", "NaN")),
    "bounds-lower-plus-inf": (S(quality_bounds=(np.inf, np.inf)), "quality_bounds"),
    "bounds-upper-minus-inf": (S(quality_bounds=(-np.inf, -np.inf)), "quality_bounds"),
    "bounds-huge": (S(quality_bounds=(0.0, 1e300)), "quality_bounds"),
    "bounds-huge-int": (S(quality_bounds=(-(10**400), 1)), "quality_bounds"),
    "batch-bounds-reversed": (B(quality_bounds=(1, 0)), "quality_bounds"),
    "batch-bounds-nan": (
        B(var=np.ones((2, 3)), quality_bounds=[0, np.nan]),
        "quality_bounds",
    ),
    "em-bounds-reversed": (E(quality_bounds=(1.0, -1.0)), "quality_bounds"),
    "em-bounds-nan": (
        E(var=[1.0] * 3, quality_bounds=(np.nan, np.inf)),
        "quality_bounds",
    ),
}


def _check_raises(case: tuple, exc: type[Exception]) -> None:
    (func, kwargs), names = case
    names = (names,) if isinstance(names, str) else names
    with pytest.raises(exc) as info:
        func(**kwargs)
    assert type(info.value) in (TypeError, ValueError), type(info.value)
    msg = str(info.value)
    for name in names:
        assert name in msg, f"the message does not name {name!r}: {msg!r}"


# Validation happens in Python before any kernel runs, so these need not run per backend (the
# fuzz tests below do).
@pytest.mark.parametrize("case", sorted(TYPE_ERRORS))
def test_type_errors(case: str) -> None:
    _check_raises(TYPE_ERRORS[case], TypeError)


@pytest.mark.parametrize("case", sorted(VALUE_ERRORS))
def test_value_errors(case: str) -> None:
    _check_raises(VALUE_ERRORS[case], ValueError)


def test_valid_edge_inputs_are_accepted(backend: str) -> None:
    # Integer and boolean arrays, lists, bool masks, read-only and non-contiguous arrays.
    # Values exactly representable in float32, so that the float32 round trip is lossless.
    q = np.array([0.125, 0.5, 0.875, 0.25])
    cost = [0.125, 0.25, 0.375, 0.5]
    base = cr.search_supermodel(q, cost, 0.5, ran=[0])
    strided = np.array([0.125, 9, 0.5, 9, 0.875, 9, 0.25, 9])[::2]
    ro = np.array(cost)
    ro.setflags(write=False)
    assert (
        cr.search_supermodel(strided, ro, 0.5, ran=np.array([True, False, False, False])) == base
    )
    assert (
        cr.search_supermodel(
            q.astype(np.float32),
            np.array(cost, dtype=np.float16),
            np.float64(0.5),
            ran=np.array([0], dtype=np.int8),
        )
        == base
    )
    assert cr.search_supermodel(q.tolist(), cost, np.float32(0.5), ran=(0,)) == base
    assert cr.search_supermodel([1, 0, 0], [0, 0, 0], 0, max_depth=np.int64(2)).supermodel == (0,)
    assert cr.search_supermodel(q, cost, 0.5, max_depth=100).supermodel
    assert cr.search_supermodel(q, cost, 0.5, ran=np.arange(4)).next_model is None
    k = cr.MAX_MODELS
    res = cr.search_supermodel(np.arange(k) / k, np.ones(k), 10.0, max_depth=1)
    assert res.supermodel == (k - 1,)
    assert cr.expected_max(np.array([1, 2, 3], dtype=np.int16)) == 3.0
    # quality_bounds: tuples, lists, arrays, ints, NumPy scalars, one-sided infinite bounds.
    want = cr.search_supermodel(q, cost, 0.5, var=[0.1] * 4, quality_bounds=(0.0, 1.0))
    for bounds in (
        [0, 1],
        np.array([0.0, 1.0]),
        np.array([0, 1], dtype=np.int8),
        (np.float32(0.0), np.int64(1)),
        (-0.0, 1.0),
    ):
        got = cr.search_supermodel(q, cost, 0.5, var=[0.1] * 4, quality_bounds=bounds)
        assert got == want, bounds
    for bounds in ((-np.inf, 0.6), (0.3, np.inf), (-np.inf, np.inf), (-1e100, 1e100)):
        assert cr.search_supermodel(q, cost, 0.5, quality_bounds=bounds).supermodel
        assert np.isfinite(cr.expected_max(q, var=[0.1] * 4, quality_bounds=bounds))


# --------------------------------------------------------------------------- fuzzing

ALLOWED = (TypeError, ValueError)


def _garbage(rng: np.random.Generator, k: int, n: int) -> tuple[str, Any]:
    """A random value of a random kind and shape, with a short description."""
    kind = int(rng.integers(0, 6))
    if kind == 0:
        pool: list[Any] = [
            None,
            0,
            1,
            -1,
            2,
            2**31,
            2**70,
            -(2**70),
            10**400,
            0.5,
            -0.5,
            float("nan"),
            float("inf"),
            -float("inf"),
            1e308,
            True,
            False,
            1j,
            "a",
            "",
            "cheapest",
            "expensive",
            b"x",
            np.float32(0.5),
            np.int8(-3),
            np.uint64(2**64 - 1),
            np.bool_(True),
            np.array("expensive"),
            object(),
            {1: 2},
            {3},
            (),
            slice(1),
        ]
        value = pool[int(rng.integers(len(pool)))]
        return f"scalar {value!r:.60}", value
    if kind == 1:
        pool = [
            [],
            [1, 2, 3],
            [0.1, "a"],
            [[1, 2], [3]],
            [None],
            [[0.1] * k] * max(n, 1),
            [0.5] * k,
            [True] * k,
            list(range(k)),
            [[0] * k] * n,
            [-1] * k,
            [[[0.0] * k] * k] * max(n, 1),
        ]
        value = pool[int(rng.integers(len(pool)))]
        return f"list {value!r:.60}", value
    shapes = [
        (),
        (0,),
        (k,),
        (k + 1,),
        (max(k - 1, 0),),
        (n, k),
        (n, k + 1),
        (k, k),
        (n, k, k),
        (1, k),
        (2, 2, 2),
        (n,),
        (n + 1,),
        (k, k + 1),
        (n, k, k + 1),
        (0, k),
    ]
    shape = shapes[int(rng.integers(len(shapes)))]
    dtypes = [
        "float64",
        "float64",
        "float64",
        "float32",
        "float16",
        "int64",
        "int8",
        "uint8",
        "uint64",
        "bool",
        "complex128",
        "object",
        "U3",
        "datetime64[D]",
        ">f8",
        "<f4",
    ]
    dtype = dtypes[int(rng.integers(len(dtypes)))]
    values = [
        "normal",
        "uniform",
        "negative",
        "nan",
        "inf",
        "zeros",
        "huge",
        "tiny",
        "ints",
    ]
    vals = values[int(rng.integers(len(values)))]
    size = int(np.prod(shape, dtype=np.int64))
    base = {
        "normal": rng.normal(size=size),
        "uniform": rng.uniform(size=size),
        "negative": -rng.uniform(size=size),
        "nan": np.where(rng.random(size) < 0.5, np.nan, 1.0),
        "inf": np.where(rng.random(size) < 0.5, np.inf, -1.0),
        "zeros": np.zeros(size),
        "huge": rng.choice([1e300, -1e300, 1e308], size=size),
        "tiny": rng.choice([5e-324, -5e-324, 1e-300], size=size),
        "ints": rng.integers(-2, k + 2, size=size).astype(float),
    }[vals].reshape(shape)
    try:
        if dtype == "object":
            arr = base.astype(object)
        elif dtype == "U3":
            arr = base.astype(str).astype("U3")
        elif dtype == "datetime64[D]":
            arr = np.zeros(shape, dtype=dtype)
        else:
            with np.errstate(all="ignore"):
                arr = base.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        arr = base
    layout = int(rng.integers(0, 5))
    desc = f"array shape={shape} dtype={dtype} values={vals}"
    if layout == 1 and arr.ndim >= 1 and arr.shape[-1] > 0:
        arr = np.repeat(arr, 2, axis=-1)[..., ::2]  # non-contiguous view, same shape
        desc += " strided"
    elif layout == 2 and arr.ndim >= 2:
        arr = np.asfortranarray(arr)
        desc += " fortran"
    elif layout == 3:
        arr.setflags(write=False)
        desc += " read-only"
    return desc, arr


def _valid_call(rng: np.random.Generator, func: str, k: int, n: int) -> dict[str, Any]:
    mode = int(rng.integers(0, 3))
    if func == "expected_max":
        kw: dict[str, Any] = {"mean": rng.normal(size=k)}
        lead: tuple[int, ...] = ()
    elif func == "search_supermodel":
        kw = {
            "quality": rng.uniform(size=k),
            "cost": rng.uniform(size=k),
            "lam": float(rng.uniform()),
            "ran": (),
            "max_depth": None,
            "force_order": True,
            "prefixes_only": False,
            "prune": True,
            "prefer": "cheapest",
            "rounding_digits": 8,
        }
        lead = ()
    else:
        kw = {
            "quality": rng.uniform(size=(n, k)),
            "cost": rng.uniform(size=(n, k)),
            "lam": rng.uniform(size=n),
            "ran": rng.random((n, k)) < 0.3,
            "max_depth": None,
            "force_order": False,
            "prefixes_only": False,
            "prune": True,
            "prefer": rng.random(n) < 0.5,
            "rounding_digits": None,
            "n_threads": 2,
        }
        lead = (n,)
    if mode == 1:
        kw["var"] = rng.uniform(0, 0.1, size=lead + (k,))
    elif mode == 2:
        a = rng.normal(size=lead + (k, k))
        kw["cov"] = a @ np.swapaxes(a, -1, -2)
    kw["n_samples"] = int(rng.choice([16, 128]))
    kw["seed"] = int(rng.integers(0, 3))
    kw["quality_bounds"] = [None, (0.0, 1.0), (-np.inf, 0.5), [0.2, np.inf]][int(rng.integers(4))]
    return kw


ARGS = {
    "expected_max": ("mean", "var", "cov", "n_samples", "seed", "quality_bounds"),
    "search_supermodel": (
        "quality",
        "cost",
        "lam",
        "var",
        "cov",
        "ran",
        "max_depth",
        "force_order",
        "prefixes_only",
        "prune",
        "prefer",
        "rounding_digits",
        "n_samples",
        "seed",
        "quality_bounds",
    ),
    "search_supermodel_batch": (
        "quality",
        "cost",
        "lam",
        "var",
        "cov",
        "ran",
        "max_depth",
        "force_order",
        "prefixes_only",
        "prune",
        "prefer",
        "rounding_digits",
        "n_samples",
        "seed",
        "quality_bounds",
        "n_threads",
    ),
}


def _fuzz(seed: int, n_calls: int) -> tuple[list[str], int]:
    rng = np.random.default_rng(seed)
    failures: list[str] = []
    n_ok = 0
    funcs = sorted(ARGS)
    for _ in range(n_calls):
        func = funcs[int(rng.integers(len(funcs)))]
        k, n = int(rng.integers(1, 7)), int(rng.integers(0, 5))
        kw = _valid_call(rng, func, k, n)
        names = ARGS[func]
        changed = []
        for name in rng.choice(names, size=int(rng.integers(1, 4)), replace=False):
            if rng.random() < 0.1:
                kw.pop(name, None)
                changed.append(f"{name} dropped")
                continue
            desc, value = _garbage(rng, k, n)
            kw[name] = value
            changed.append(f"{name}={desc}")
        positional = [kw.pop(a) for a in names[: (1 if func == "expected_max" else 3)] if a in kw]
        try:
            with np.errstate(all="ignore"):
                out = getattr(cr, func)(*positional, **kw)
        except ALLOWED:
            continue
        except Exception as exc:
            failures.append(f"{func}({'; '.join(changed)}) raised {type(exc).__name__}: {exc}")
            continue
        n_ok += 1
        expected_type = {
            "expected_max": float,
            "search_supermodel": cr.SearchResult,
            "search_supermodel_batch": cr.BatchSearchResult,
        }[func]
        if not isinstance(out, expected_type):
            failures.append(f"{func}({'; '.join(changed)}) returned {type(out).__name__}")
    return failures, n_ok


def test_fuzz_public_api(backend: str) -> None:
    """Random garbage for every argument: only TypeError or ValueError, never anything else."""
    failures, n_ok = _fuzz(seed=1234, n_calls=3000)
    unique = sorted(set(failures))
    assert not unique, f"{len(failures)} calls raised something else:\n" + "\n".join(unique[:30])
    assert n_ok > 50  # the fuzzer also produces inputs that are (surprisingly) valid


def test_fuzz_standard_normals() -> None:
    for k in (0, -1, 1.5, "a", None, [1], 2**70, 30000):
        for n in (128, 3, 0, 1.5, None):
            try:
                cr.standard_normals(k, n)  # type: ignore[arg-type]
            except ALLOWED:
                pass


# --------------------------------------------------------------------------- the compiled core

_CORE_FUZZ = textwrap.dedent(
    r"""
    import json, sys
    import numpy as np
    from cascade_routing import _core

    rng = np.random.default_rng(int(sys.argv[1]))
    n_calls = int(sys.argv[2])
    k, n, ns = 3, 4, 16

    def f64(*shape):
        return np.ascontiguousarray(rng.uniform(size=shape))

    def u8(*shape):
        return np.ascontiguousarray(rng.random(shape) < 0.3, dtype=np.uint8)

    def bounds():
        # The trailing quality bounds: omitted (the defaults) or given.
        return [[], [-np.inf, np.inf], [0.0, 1.0], [0.5, np.inf]][int(rng.integers(4))]

    def valid(name):
        normals = f64(ns, k) - 0.5
        chol = np.ascontiguousarray(np.tril(f64(k, k)))
        if name == "cholesky_psd":
            a = f64(k, k)
            return [np.ascontiguousarray(a @ a.T)], {}
        if name == "search":
            return [f64(k), f64(k), 0.3, int(rng.integers(0, 3)), f64(k), chol, normals,
                    np.zeros(k, np.uint8), k, True, False, True, False, 8, *bounds()], {}
        if name == "search_batch":
            return [f64(n, k), f64(n, k), f64(n), int(rng.integers(0, 3)), f64(n, k),
                    np.ascontiguousarray(np.tril(f64(n, k, k))), normals, u8(n, k), k, False,
                    False, True, u8(n), 8, *bounds()], {"n_threads": 2}
        return [f64(n, k), f64(n, k), f64(n, k) * 0.1, f64(n, k) * 0.1, f64(n, k), f64(n, k),
                f64(n, k), f64(n, k), f64(2), u8(n), normals, bool(rng.random() < 0.5),
                int(rng.integers(0, 2)), f64(k), k, False, False, True, 8, False, *bounds()], \
               {"n_threads": 2}

    def garbage():
        pool = [None, 0, 1, -1, 2, 3, 255, 2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63),
                2**64, 1.5, float("nan"), float("inf"), -float("inf"), -0.5, 1e308, True,
                "x", b"x", object(), [1.0, 2.0, 3.0], (1, 2, 3), np.float32(1.0),
                np.int64(2), np.bool_(True)]
        c = int(rng.integers(0, 3))
        if c == 0:
            i = int(rng.integers(len(pool)))
            return f"scalar {pool[i]!r:.60}", pool[i]
        shapes = [(), (0,), (1,), (k,), (k + 1,), (k - 1,), (n,), (n + 1,), (n, k), (n, k + 1),
                  (n + 1, k), (k, k), (k + 1, k + 1), (n, k, k), (n, k + 1, k + 1), (0, k),
                  (ns, k), (ns, k + 1), (0, 0), (2,), (1, 1, 1, 1)]
        shape = shapes[int(rng.integers(len(shapes)))]
        dtypes = ["float64", "float64", "float64", "float32", "int64", "int32", "uint8",
                  "bool", "complex128", "object", ">f8"]
        dtype = dtypes[int(rng.integers(len(dtypes)))]
        fill = ["uniform", "nan", "inf", "huge", "negative", "ints"][int(rng.integers(6))]
        base = {"uniform": np.asarray(rng.uniform(size=shape)), "nan": np.full(shape, np.nan),
                "inf": np.full(shape, np.inf), "huge": np.full(shape, 1e308),
                "negative": -np.asarray(rng.uniform(size=shape)),
                "ints": np.asarray(rng.integers(-3, 300, size=shape)).astype(float)}[fill]
        with np.errstate(all="ignore"):
            arr = np.asarray(base, dtype=dtype if dtype != "object" else object)
        desc = f"array {shape} {dtype} {fill}"
        layout = int(rng.integers(0, 4))
        if layout == 1 and arr.ndim >= 1 and arr.shape[-1] > 0:
            arr = np.repeat(arr, 2, axis=-1)[..., ::2]
            desc += " strided"
        elif layout == 2 and arr.ndim >= 1 and arr.dtype == np.float64 and arr.size:
            buf = np.zeros(arr.nbytes + 1, np.uint8)
            un = np.frombuffer(buf.data, dtype=np.float64, count=arr.size, offset=1)
            arr = un.reshape(arr.shape)
            desc += " unaligned"
        elif layout == 3:
            arr.setflags(write=False)
            desc += " read-only"
        return desc, arr

    RISKY_INTS = [-1, 0, 1, 2, 3, 4, 5, 63, 64, 65, 255, 2**31 - 1, -(2**31), 2**63 - 1,
                  -(2**63)]
    RISKY_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e308, 5e-324]

    def plausible(like):
        # Same type as the valid argument, wrong content: shapes and values that a C++ core
        # must check before it indexes anything.
        if isinstance(like, np.ndarray):
            shapes = [(), (0,), (1,), (k - 1,), (k + 1,), (n + 1,), (n, k + 1), (n + 1, k),
                      (n, k - 1), (k + 1, k + 1), (k - 1, k - 1), (n, k + 1, k + 1),
                      (n + 1, k, k), (0, k), (ns, k - 1), (ns, k + 1), (1, k), (2 * ns, k),
                      like.shape, like.shape, like.shape]
            shape = shapes[int(rng.integers(len(shapes)))]
            fill = ["uniform", "nan", "inf", "huge", "negative", "ints", "zeros"][
                int(rng.integers(7))]
            base = {"uniform": rng.uniform(size=shape), "nan": np.full(shape, np.nan),
                    "inf": np.full(shape, np.inf), "huge": np.full(shape, 1e308),
                    "negative": -np.asarray(rng.uniform(size=shape)),
                    "zeros": np.zeros(shape),
                    "ints": np.asarray(rng.integers(-3, 300, size=shape)).astype(float)}[fill]
            with np.errstate(all="ignore"):
                arr = np.ascontiguousarray(base.astype(like.dtype))
            return f"plausible array {shape} {like.dtype} {fill}", arr
        if isinstance(like, bool):
            v = bool(rng.random() < 0.5)
        elif isinstance(like, int):
            v = RISKY_INTS[int(rng.integers(len(RISKY_INTS)))]
        else:
            v = RISKY_FLOATS[int(rng.integers(len(RISKY_FLOATS)))]
        return f"plausible {v!r}", v

    names = ["cholesky_psd", "search", "search_batch", "replay_two_phase"]
    bad, counts = [], {"ok": 0, "TypeError": 0, "ValueError": 0}
    for i in range(n_calls):
        name = names[int(rng.integers(len(names)))]
        args, kwargs = valid(name)
        changed = []
        for _ in range(int(rng.integers(1, 4))):
            if "n_threads" in kwargs and rng.random() < 0.1:
                desc, kwargs["n_threads"] = (plausible(2) if rng.random() < 0.6 else
                                             garbage())
                changed.append(f"n_threads={desc}")
                continue
            pos = int(rng.integers(len(args)))
            desc, args[pos] = plausible(args[pos]) if rng.random() < 0.6 else garbage()
            changed.append(f"arg{pos}={desc}")
        if rng.random() < 0.05:
            args = args[: int(rng.integers(len(args)))]
            changed.append(f"truncated to {len(args)} args")
        line = f"{name}: {'; '.join(changed)}"
        print(line, flush=True)
        try:
            getattr(_core, name)(*args, **kwargs)
            counts["ok"] += 1
        except (TypeError, ValueError) as exc:
            counts["TypeError" if isinstance(exc, TypeError) else "ValueError"] += 1
        except BaseException as exc:
            bad.append(f"{line} -> {type(exc).__name__}: {exc}")
    print("RESULT " + json.dumps({"bad": bad, "counts": counts}), flush=True)
    """
)


def _env_with_package() -> dict[str, str]:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(cr.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_compiled_core(seed: int) -> None:
    """The private ``_core`` functions check everything themselves: garbage raises TypeError or
    ValueError, never another exception and never a crash (run in a subprocess so that a
    crash is reported with the call that caused it)."""
    require_backend("cpp")
    proc = subprocess.run(
        [sys.executable, "-c", _CORE_FUZZ, str(seed), "3000"],
        capture_output=True,
        text=True,
        env=_env_with_package(),
        timeout=300,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, (
        f"the fuzzer died (return code {proc.returncode}) after: {lines[-1:]}\n"
        f"stderr: {proc.stderr[-2000:]}"
    )
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert not result["bad"], "\n".join(result["bad"][:30])
    counts = result["counts"]
    assert counts["TypeError"] > 50 and counts["ValueError"] > 50 and counts["ok"] > 10, counts


def test_core_rejects_wrong_dtype_and_layout() -> None:
    """Spot checks of the compiled boundary: no silent copies, the fix in the message."""
    require_backend("cpp")
    from cascade_routing import _core

    cov = np.eye(3)
    assert np.array_equal(_core.cholesky_psd(cov), np.eye(3))
    with pytest.raises(TypeError, match="cov"):
        _core.cholesky_psd(cov.astype(np.float32))
    with pytest.raises(ValueError, match="cov"):
        _core.cholesky_psd(np.asfortranarray(np.ones((3, 3)) + np.eye(3))[:, ::-1])
    with pytest.raises(ValueError, match="cov"):
        _core.cholesky_psd(np.ones((3, 2)))
    with pytest.raises(ValueError, match="cov"):
        _core.cholesky_psd(np.full((2, 2), np.nan))
