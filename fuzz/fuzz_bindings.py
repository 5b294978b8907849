#!/usr/bin/env python3
"""Coverage-guided fuzzing of the compiled bindings: garbage in, only TypeError or ValueError out.

Every input becomes one call of ``_core.cholesky_psd``, ``search``, ``search_batch``,
``replay_two_phase`` or of the prepared decider ``_core.Decider`` (its construction,
``decide``, ``decide_batch`` or ``has_runset``): a valid call (small k, n and sample counts,
so that no search is long) to which the input applies a few mutations: wrong dtypes, shapes,
layouts (non-contiguous, unaligned, read-only, huge zero-stride views), NaN / inf / huge values,
wrong Python types for scalars and options, out-of-range options and thread counts, and
missing or extra arguments; for the decider also run-set masks out of range, missing from
its table, not a prefix of a cascade, negative or above 2**64, and duplicated or invalid
run-sets and factors. Whatever the call does, only
TypeError or ValueError may escape (and from a decision, KeyError for a run-set missing from
the decider's table, as documented); anything else (another exception, a crash, a sanitizer
report under ``scripts/fuzz.sh --sanitized``) is a finding. A decision that returns must name
a model below k and a supermodel that holds the run models.

Coverage: atheris sees the Python code only; the C++ core is built with GCC, not with
libFuzzer's instrumentation. So that the fuzzer still learns which checks of the bindings an
input reached, each distinct outcome (the argument and the kind of mistake a message names, or
the shape of a result) runs its own instrumented marker function: a new outcome is new
coverage, and the input that found it is kept in the corpus.

    python fuzz/fuzz_bindings.py -max_total_time=60 NEW_DIR fuzz/corpus/bindings
    scripts/fuzz.sh [SECONDS]        (bounded run, as in CI)
"""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import atheris
import numpy as np

from cascade_routing import _core

# --------------------------------------------------------------------------- outcomes

#: Words of the bindings' messages (argument names and kinds of mistake).
_WORDS = (
    "quality",
    "cost",
    "lam",
    "mode",
    "sd",
    "chol",
    "normals",
    "ran",
    "max_depth",
    "digits",
    "prefer_expensive",
    "n_threads",
    "lambdas",
    "thresholds",
    "strategy",
    "bounds",
    "cov",
    "ante_",
    "post_",
    "true_",
    "dtype",
    "shape",
    "contiguous",
    "NaN",
    "models",
    "sample",
    "incompatible",
    "between",
    "row",
    "runsets",
    "factors",
    "lam_cheap",
    "lam_expensive",
    "distinct",
    "expensive",
    "mask",
    "no factor",
    "prefix",
    "standard deviations",
    "finite",
)


def _marker(name: str) -> Callable[[], None]:
    # A distinct, instrumented code object per outcome: calling it is new coverage.
    code = compile("pass", f"<outcome {name}>", "exec")
    return atheris.instrument_func(types.FunctionType(code, {}, f"outcome_{name}"))


_MARKERS = {w: _marker(w) for w in _WORDS}
_MARKERS.update(
    {
        f"{kind}:{t}": _marker(f"{kind}_{t}")
        for kind in ("TypeError", "ValueError")
        for t in ("0", "1")
    }
)
_MARKERS.update({f"ok:{i}": _marker(f"ok_{i}") for i in range(-1, 12)})


def _note_error(exc: Exception) -> None:
    msg = str(exc)
    _MARKERS[f"{type(exc).__name__}:{int('got' in msg)}"]()
    for word, mark in _MARKERS.items():
        if word in msg:
            mark()


def _note_result(result: Any) -> None:
    if isinstance(result, tuple) and result and isinstance(result[0], int):
        _MARKERS.get(f"ok:{result[0]}", _MARKERS["ok:-1"])()
    elif isinstance(result, tuple):
        _MARKERS[f"ok:{min(int(np.asarray(result[0]).size), 11)}"]()


# --------------------------------------------------------------------------- inputs

_DTYPES = (np.float64, np.float32, np.int64, np.uint8, np.bool_, np.complex128, object, ">f8")
_SPECIAL = (np.nan, np.inf, -np.inf, 1e308, -1e308, -0.0, 5e-324, 1e154, -1.0, 0.0)
_SCALARS: tuple[Any, ...] = (
    None,
    "2",
    1.5,
    2**70,
    -(2**70),
    -1,
    0,
    True,
    [1.0, 2.0],
    (),
    np.nan,
    np.inf,
    np.float32(1.0),
    np.int64(3),
    10**400,
    b"x",
)


def _valid_args(
    fn: str, k: int, n: int, ns: int, mode: int, rng: np.random.Generator
) -> tuple[list[Any], dict[str, Any]]:
    """A valid call of ``fn``; every search in it scores at most 2^k * ns <= 2^14 samples."""

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(size=shape)

    def psd(*lead: int) -> np.ndarray:
        a = rng.normal(size=(*lead, k, k)) * 0.1
        return np.ascontiguousarray(np.tril(a))

    normals = rng.standard_normal((ns, k))
    if fn == "cholesky_psd":
        a = rng.normal(size=(k, k))
        return [a @ a.T], {}
    if fn == "search":
        return [
            u(k),
            u(k),
            float(rng.uniform()),
            mode,
            u(k) * 0.1,
            psd(),
            normals,
            (rng.random(k) < 0.3).astype(np.uint8),
            k,
            bool(rng.random() < 0.5),
            False,
            True,
            bool(rng.random() < 0.5),
            8,
        ], {}
    if fn == "search_batch":
        return [
            u(n, k),
            u(n, k),
            u(n),
            mode,
            u(n, k) * 0.1,
            psd(n),
            normals,
            (rng.random((n, k)) < 0.3).astype(np.uint8),
            k,
            False,
            False,
            True,
            np.zeros(n, np.uint8),
            8,
        ], {"n_threads": 1}
    return [
        u(n, k),
        u(n, k),
        u(n, k) * 0.1,
        u(n, k) * 0.01,
        u(n, k),
        u(n, k),
        u(n, k),
        u(n, k),
        u(3) * 0.2,
        np.zeros(n, np.uint8),
        normals,
        bool(mode),
        mode % 2,
        u(k),
        k,
        False,
        False,
        True,
        8,
        False,
    ], {"n_threads": 1}


def _decider_args(
    k: int, ns: int, mode: int, rng: np.random.Generator
) -> tuple[list[Any], list[int]]:
    """A valid ``_core.Decider(...)`` call and the run-sets of its table (at most 12, the
    empty one included); every decision scores at most 2^k * ns <= 2^14 samples."""
    prefixes = bool(rng.random() < 0.3)
    if prefixes:
        masks = [(1 << j) - 1 for j in range(k + 1)]
    else:
        drawn = rng.integers(0, 1 << k, size=min(1 << k, 11)).tolist()
        masks = sorted({0, *(int(m) for m in drawn)})
    rng.shuffle(masks)  # the decider sorts them
    if mode == 2:
        factors = np.ascontiguousarray(np.tril(rng.normal(size=(len(masks), k, k)) * 0.1))
    else:
        factors = rng.uniform(size=(len(masks), k)) * 0.1
    steps = int(rng.integers(1, k + 1))
    bounded = bool(rng.random() < 0.3)
    return [
        k,
        mode,
        rng.standard_normal((ns, k)),
        rng.uniform(size=steps),
        rng.uniform(size=steps),
        int(rng.integers(1, k + 1)) if rng.random() < 0.5 else k,
        bool(rng.random() < 0.5),
        prefixes,
        int(rng.integers(-1, 9)),
        0.0 if bounded else -np.inf,
        1.0 if bounded else np.inf,
        np.array(masks, dtype=np.uint64),
        factors,
    ], masks


def _decision_args(
    fn: str, k: int, n: int, masks: list[int], rng: np.random.Generator
) -> tuple[list[Any], dict[str, Any]]:
    """A valid call of the decider's method ``fn`` at run-sets of its table."""
    if fn == "Decider.decide":
        ran = masks[int(rng.integers(0, len(masks)))]
        return [rng.uniform(size=k), rng.uniform(size=k), ran, bool(rng.random() < 0.5)], {}
    if fn == "Decider.decide_batch":
        ran = np.array([masks[i] for i in rng.integers(0, len(masks), n)], dtype=np.uint64)
        e = (rng.random(n) < 0.5).astype(np.uint8)
        return [rng.uniform(size=(n, k)), rng.uniform(size=(n, k)), ran, e], {"n_threads": 1}
    return [masks[int(rng.integers(0, len(masks)))]], {}


def _masks(k: int) -> list[Any]:
    """Run-set masks and mask-like values a decider must refuse or handle."""
    return [
        1 << k,
        (1 << k) - 1,
        2,
        5,
        2**63,
        2**64 - 1,
        2**64,
        2**70,
        -1,
        -(2**63),
        np.uint64(2**64 - 1),
        np.int64(-1),
        np.int8(1),
        np.bool_(True),
        1.0,
        "1",
        None,
    ]


def _mutate_decider(
    fdp: atheris.FuzzedDataProvider, fn: str, k: int, args: list[Any], kwargs: dict[str, Any]
) -> None:
    """Mistakes particular to the decider: masks, run-set tables, huge or negative sizes."""
    for _ in range(fdp.ConsumeIntInRange(0, 2)):
        op = fdp.ConsumeIntInRange(0, 4)
        if not args:
            return
        if op == 0 and fn in ("Decider.decide", "Decider.has_runset"):  # the mask
            i = 2 if fn == "Decider.decide" else 0
            if i < len(args):
                args[i] = fdp.PickValueInList(_masks(k))
        elif op == 0 and fn == "Decider.decide_batch" and len(args) > 2:
            if np.size(args[2]) > 1024:  # a huge zero-stride view: never copied
                continue
            ran = np.array(args[2], copy=True)
            if ran.size and ran.dtype == np.uint64:
                values = [1 << k, 2**64 - 1, 2**63, 2, 5, (1 << k) - 1]
                ran.reshape(-1)[fdp.ConsumeIntInRange(0, ran.size - 1)] = fdp.PickValueInList(
                    values
                )
            args[2] = ran if fdp.ConsumeBool() else _cast(ran, np.int64)
        elif op == 1 and fn == "Decider" and len(args) > 12:  # the run-set table
            if np.size(args[11]) > 1024:
                continue
            runsets = np.array(args[11], copy=True)
            if runsets.size and runsets.dtype == np.uint64:
                j = fdp.ConsumeIntInRange(0, runsets.size - 1)
                runsets[j] = fdp.PickValueInList([int(runsets[0]), 1 << k, 2**64 - 1, 2**63])
            args[11] = runsets
        elif op == 2 and fn == "Decider":  # sizes and options out of range
            i = fdp.ConsumeIntInRange(0, min(len(args), 13) - 1)
            values: list[Any] = {
                0: [0, -1, 65, 64, 2**31, 2**63, -(2**63)],
                1: [-1, 3, 2**31],
                5: [0, -1, 2**63 - 1, -(2**63), 2**64],
                8: [-2, 16, 2**31],
                9: [np.nan, np.inf, 1.0],
                10: [np.nan, -np.inf, 0.0],
            }.get(i, [np.empty((0,)), np.empty((0, k)), np.empty((0, k, k))])
            args[i] = fdp.PickValueInList(values)
        elif op == 3:  # a huge array that takes no memory (zero strides)
            i = fdp.ConsumeIntInRange(0, len(args) - 1)
            if isinstance(args[i], np.ndarray):
                shape = tuple(
                    fdp.PickValueInList([2**31, 2**40, k, 1]) for _ in range(args[i].ndim or 1)
                )
                try:
                    args[i] = np.lib.stride_tricks.as_strided(
                        np.zeros(1, args[i].dtype), shape=shape, strides=(0,) * len(shape)
                    )
                except ValueError:  # larger than NumPy can describe: not the code under test
                    pass
        elif op == 4 and "n_threads" in kwargs:
            kwargs["n_threads"] = fdp.PickValueInList([0, 2, 1024])


def _check_decision(fn: str, k: int, args: list[Any], result: Any) -> None:
    """What a decision that returns must satisfy."""
    if fn == "Decider.decide":
        nm, members, _ = result
        assert -1 <= nm < k and 0 <= members < 1 << k, result
        ran = args[2]
        if type(ran) is int:
            assert members & ran == ran, (result, ran)
            assert nm == -1 or not (ran >> nm) & 1, (result, ran)
    elif fn == "Decider.decide_batch":
        nm, members, util = result
        n = args[0].shape[0]
        assert nm.shape == members.shape == util.shape == (n,), result
        assert ((nm >= -1) & (nm < k)).all(), result
        if k < 64:
            assert (members < np.uint64(1 << k)).all(), result


def _call_decider(
    fdp: atheris.FuzzedDataProvider, fn: str, k: int, n: int, ns: int, mode: int, rng: Any
) -> None:
    """One call of the decider: its construction, or a method of a valid decider."""
    dargs, masks = _decider_args(k, ns, mode, rng)
    if fn == "Decider":
        args, kwargs = dargs, {}
    else:
        decider = _core.Decider(*dargs)  # a valid spec: must build
        args, kwargs = _decision_args(fn, k, n, masks, rng)
    with np.errstate(all="ignore"):
        _mutate(fdp, args, kwargs)
        _mutate_decider(fdp, fn, k, args, kwargs)
    try:
        if fn == "Decider":
            result = _core.Decider(*args, **kwargs)
            _MARKERS["ok:-1"]()
            return
        result = getattr(decider, fn.split(".")[1])(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        _note_error(exc)
        return
    except KeyError as exc:  # documented: a run-set the decider has no factor for
        if fn == "Decider.has_runset" or "no factor" not in str(exc):
            raise
        _MARKERS["no factor"]()
        return
    if fn == "Decider.has_runset":
        assert isinstance(result, bool), result
        _MARKERS[f"ok:{int(result)}"]()
        return
    _note_result(result)
    _check_decision(fn, k, args, result)


def _cast(a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` as ``dtype``, or ``a`` itself where NumPy cannot cast it (an object array of
    Python ints to uint8, complex to float): building the input is not the code under test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return a.astype(dtype)
    except (OverflowError, TypeError, ValueError):
        return a


def _mutate_array(fdp: atheris.FuzzedDataProvider, a: np.ndarray) -> Any:
    op = fdp.ConsumeIntInRange(0, 6)
    if op == 0:
        return _cast(a, fdp.PickValueInList(list(_DTYPES)))
    if op == 1:  # another shape (at most 12 per side: no search can grow long)
        ndim = fdp.ConsumeIntInRange(0, 3)
        shape = tuple(fdp.ConsumeIntInRange(0, 12) for _ in range(ndim))
        return np.resize(_cast(a, np.float64), shape)
    if op == 2:  # non-contiguous view
        return np.repeat(a, 2, axis=-1)[..., ::2] if a.ndim else a
    if op == 3:  # unaligned copy
        if a.nbytes == 0 or a.dtype.hasobject:
            return a
        raw = np.zeros(a.nbytes + 1, np.uint8)
        b = raw[1:].view(a.dtype).reshape(a.shape)
        b[...] = a
        return b
    if op == 4:  # read-only (must be accepted: inputs are never written)
        b = a.copy()
        b.flags.writeable = False
        return b
    b = _cast(a, np.float64)
    if b.dtype != np.float64:  # not castable: nothing to poison
        return a
    b = b.copy() if b is a else b
    if b.size:
        flat = b.reshape(-1)
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            flat[fdp.ConsumeIntInRange(0, b.size - 1)] = fdp.PickValueInList(list(_SPECIAL))
    return b if op == 5 else _cast(b, a.dtype)


def _mutate(fdp: atheris.FuzzedDataProvider, args: list[Any], kwargs: dict[str, Any]) -> None:
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        op = fdp.ConsumeIntInRange(0, 5)
        i = fdp.ConsumeIntInRange(0, len(args) - 1) if args else 0
        if op == 0 and args:
            args[i] = fdp.PickValueInList(list(_SCALARS))
        elif op == 1 and args and isinstance(args[i], np.ndarray):
            args[i] = _mutate_array(fdp, args[i])
        elif op == 2 and args and isinstance(args[i], (bool, int)):
            args[i] = (
                fdp.ConsumeIntInRange(-(2**40), 2**40)
                if fdp.ConsumeBool()
                else fdp.ConsumeIntInRange(-3, 70)
            )
        elif op == 3 and "n_threads" in kwargs:
            kwargs["n_threads"] = fdp.PickValueInList(
                [-1, 0, 2, 1024, 1025, 2**40, 2**64, 1.0, None, "1", np.int32(2)]
            )
        elif op == 4:  # quality bounds (trailing arguments)
            bounds = [np.nan, np.inf, -np.inf, 0.0, 0.5, 1.0, 1e308]
            if len(args) >= 14:
                args.extend([fdp.PickValueInList(bounds), fdp.PickValueInList(bounds)])
        elif op == 5:  # wrong number of arguments
            if fdp.ConsumeBool() and args:
                args.pop()
            else:
                args.append(np.zeros(2))


# The decider's calls come after the first four, so that the committed inputs of those four
# still pick the same function (a choice among 8 and among 4 agree on half of the bytes).
_DECIDER_CALLS = ("Decider", "Decider.decide", "Decider.decide_batch", "Decider.has_runset")
_FUNCTIONS = ("cholesky_psd", "search", "search_batch", "replay_two_phase", *_DECIDER_CALLS)


def one_input(data: bytes) -> None:
    """The fuzz target: one call built from ``data``."""
    fdp = atheris.FuzzedDataProvider(data)
    fn = fdp.PickValueInList(list(_FUNCTIONS))
    k = fdp.ConsumeIntInRange(1, 10)
    n = fdp.ConsumeIntInRange(0, 6)
    ns = fdp.ConsumeIntInRange(1, 16)
    mode = fdp.ConsumeIntInRange(0, 2)
    rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 2**32))
    if fn in _DECIDER_CALLS:
        _call_decider(fdp, fn, k, n, ns, mode, rng)
        return
    args, kwargs = _valid_args(fn, k, n, ns, mode, rng)
    with np.errstate(all="ignore"):  # casts of inf / huge values to int dtypes
        _mutate(fdp, args, kwargs)
    try:
        result = getattr(_core, fn)(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        _note_error(exc)
        return
    _note_result(result)
    if fn == "search":
        assert -1 <= result[0] < len(result[1]), result


one_input = atheris.instrument_func(one_input)
_mutate = atheris.instrument_func(_mutate)
_mutate_array = atheris.instrument_func(_mutate_array)
_mutate_decider = atheris.instrument_func(_mutate_decider)
_call_decider = atheris.instrument_func(_call_decider)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
