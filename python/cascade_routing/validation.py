"""One validation layer for every part of the package.

Every public entry point converts and checks user input here, once, so that the same mistake
raises the same exception with the same kind of message wherever it is made:

- a value of the wrong type (a string where a number belongs, a float where an int belongs)
  raises :class:`TypeError`;
- a value of the right type but the wrong size, shape or range (NaN, negative cost, index out
  of range, non-PSD covariance) raises :class:`ValueError`;
- an unknown model name raises :class:`UnknownModelError`, which is both a ``ValueError`` and
  a ``KeyError`` so that either ``except`` clause catches it.

Every message names the argument and says how to fix it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: The largest number of models a strategy or a search accepts (a supermodel is a 64-bit mask).
MAX_MODELS = 64
#: The largest ``n_threads`` accepted (the threads used are also capped at the cores).
MAX_THREADS = 1024
#: The largest number of quasi-Monte Carlo samples per decision.
MAX_SAMPLES = 1 << 16
#: Largest magnitude accepted for qualities, costs, variances and multipliers: far beyond any
#: real value, and small enough that no sum or product in the search overflows on any backend.
MAX_MAGNITUDE = 1e100
#: A covariance may have eigenvalues down to ``-PSD_TOLERANCE * (largest |eigenvalue|)``.
PSD_TOLERANCE = 1e-8

_NUMERIC_KINDS = "fiub"
# The ufunc reductions directly: no Python wrapper per call (these run on every decision).
_min = np.minimum.reduce
_max = np.maximum.reduce


class UnknownModelError(ValueError, KeyError):
    """A model name that the strategy or estimator does not know."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- scalars


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), booleans excluded."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or NumPy), booleans excluded."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (either side may be open)."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        if high is None:
            rng = f">= {low}"
        elif low is None:
            rng = f"<= {high}"
        else:
            rng = f"between {low} and {high}"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def check_number(
    value: Any, name: str, low: float | None = None, high: float | None = None
) -> float:
    """``value`` as a finite float in ``[low, high]`` (either side may be open)."""
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if is_int(value) and abs(int(value)) > MAX_MAGNITUDE:
        raise ValueError(f"{name} must be at most {MAX_MAGNITUDE:g} in magnitude, got {value}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    if (low is not None and v < low) or (high is not None and v > high):
        if high is None:
            rng = f">= {low:g}"
        elif low is None:
            rng = f"<= {high:g}"
        else:
            rng = f"between {low:g} and {high:g}"
        raise ValueError(f"{name} must be {rng}, got {v:g}")
    return v


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; only ``True``/``False`` (or NumPy booleans) are accepted."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A non-negative integer seed."""
    return check_int(value, name, 0)


def check_n_samples(value: Any, name: str = "n_samples") -> int:
    """A number of Sobol samples: a power of two in ``1..MAX_SAMPLES``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    n = int(value)
    if n < 1 or n > MAX_SAMPLES or n & (n - 1):
        raise ValueError(
            f"{name} must be a power of two between 1 and {MAX_SAMPLES} "
            f"(Sobol points are balanced only then), got {n}"
        )
    return n


def check_depth(max_depth: Any, name: str = "max_depth") -> int | None:
    """``None`` (no limit) or a positive int."""
    if max_depth is None:
        return None
    if not is_int(max_depth) or max_depth < 1:
        raise ValueError(f"{name} must be a positive int or None, got {max_depth!r}")
    return int(max_depth)


def check_rounding_digits(value: Any, name: str = "rounding_digits") -> int | None:
    """``None`` (exact comparisons) or an int in ``0..15``."""
    if value is None:
        return None
    return check_int(value, name, 0, 15)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value


def check_bounds(bounds: Any, name: str = "quality_bounds") -> tuple[float, float]:
    """``(lower, upper)`` of a pair of bounds; ``None`` is ``(-inf, inf)``, i.e. no clipping."""
    if bounds is None:
        return -math.inf, math.inf
    if isinstance(bounds, np.ndarray):
        if bounds.ndim != 1:
            raise ValueError(
                f"{name} must be a (lower, upper) pair, got an array of shape {bounds.shape}"
            )
        pair = bounds.tolist()
    elif isinstance(bounds, (tuple, list)):
        pair = list(bounds)
    else:
        raise TypeError(
            f"{name} must be None or a (lower, upper) pair of numbers, got {type(bounds).__name__}"
        )
    if len(pair) != 2:
        raise ValueError(
            f"{name} must be a (lower, upper) pair, got {len(pair)} values; pass e.g. "
            "(0.0, 1.0), or (-inf, 1.0) for an upper bound only"
        )
    out = []
    for side, v in zip(("lower", "upper"), pair):
        if not is_real(v):
            raise TypeError(
                f"{name} {side} must be a real number (or -inf / inf), got {type(v).__name__}"
            )
        if is_int(v) and abs(int(v)) > MAX_MAGNITUDE:
            raise ValueError(f"{name} {side} is beyond +-{MAX_MAGNITUDE:g}; rescale it")
        f = float(v)
        if math.isnan(f):
            raise ValueError(f"{name} {side} is NaN; pass a number, or -inf / inf for none")
        if math.isfinite(f) and abs(f) > MAX_MAGNITUDE:
            raise ValueError(
                f"{name} {side} is beyond +-{MAX_MAGNITUDE:g}; rescale it or pass "
                "-inf / inf for no bound"
            )
        out.append(f)
    lower, upper = out
    if not lower < upper:
        raise ValueError(f"{name} must satisfy lower < upper, got ({lower!r}, {upper!r})")
    return lower, upper


# --------------------------------------------------------------------------- arrays


def _all_finite(arr: NDArray[np.float64]) -> bool:
    # A finite sum proves every element finite; only an overflowing sum needs the full check.
    if math.isfinite(float(arr.sum())):
        return True
    return bool(np.isfinite(arr).all())


def all_within(arr: NDArray[np.float64], low: float, high: float) -> bool:
    """Whether every value lies in ``[low, high]`` (False for NaN); fast for small arrays."""
    if arr.size == 0:
        return True
    return bool(low <= _min(arr, axis=None) and _max(arr, axis=None) <= high)


def float_array(
    value: Any,
    name: str,
    ndim: int | tuple[int, ...],
    *,
    shape: tuple[int, ...] | None = None,
    layout: str = "",
    nonnegative: bool = False,
    allow_neg_inf: bool = False,
    hint: str = "",
) -> NDArray[np.float64]:
    """``value`` as a C-contiguous float64 array of finite values within ``±MAX_MAGNITUDE``.

    Booleans and integers are converted. ``ndim`` may be a tuple of accepted dimensions.
    ``layout`` describes the dimensions in messages (e.g. ``"queries x models"``); ``hint``
    replaces the default fix in the NaN message. With ``allow_neg_inf``, ``-inf`` passes (for
    log-probabilities of impossible events). Raises ``TypeError`` for a non-numeric dtype and
    ``ValueError`` for a wrong number of dimensions, a shape other than ``shape``, NaN or
    infinite values, negative values with ``nonnegative``, or values beyond the magnitude.
    An array that is already C-contiguous float64 is returned as it is (no copy).
    """
    dims = (ndim,) if isinstance(ndim, int) else ndim
    described = f" ({layout})" if layout else ""
    if type(value) is np.ndarray and value.dtype == np.float64 and value.flags.c_contiguous:
        out = value  # the common case: no conversion, no copy
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{name} must be a rectangular array of real numbers ({exc})"
            ) from None
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(
                f"{name} must be an array of real numbers, got dtype {arr.dtype}; "
                "pass a float or integer numpy array"
            )
        if arr.ndim in dims:
            out = np.ascontiguousarray(arr, dtype=np.float64)
        else:
            out = arr  # reported below
    if out.ndim not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name} must be {want}{described}, got shape {out.shape}")
    if shape is not None and out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}{described}, got {out.shape}")
    # min and max within +-MAX_MAGNITUDE prove every value finite and in range (NaN fails
    # both comparisons); only then is the slower diagnosis needed.
    low = 0.0 if nonnegative else -MAX_MAGNITUDE
    if out.size and not (low <= _min(out, axis=None) and _max(out, axis=None) <= MAX_MAGNITUDE):
        fix = hint or "pass finite numbers"
        if allow_neg_inf:
            bad = np.isnan(out) | (out == np.inf)
            if bad.any():
                raise ValueError(f"{name} contains NaN or +inf values; {fix}")
            finite = out[np.isfinite(out)]
        else:
            if not _all_finite(out):
                raise ValueError(f"{name} contains NaN or infinite values; {fix}")
            finite = out
        if nonnegative and (out < 0).any():
            raise ValueError(f"{name} must be non-negative")
        if finite.size and np.abs(finite).max() > MAX_MAGNITUDE:
            raise ValueError(f"{name} has values beyond +-{MAX_MAGNITUDE:g}; rescale them")
    return out


def check_psd(cov: NDArray[np.float64], name: str) -> None:
    """Raise unless ``cov`` (``(..., k, k)``) is symmetric positive semi-definite.

    The tolerance is relative to the largest |eigenvalue| of each matrix only, so a tiny
    matrix such as ``1e-9 * [[1, 5], [5, 1]]`` is rejected as surely as a large one.
    """
    scale = np.abs(cov).max(axis=(-2, -1)) if cov.size else np.zeros(cov.shape[:-2])
    asymmetry = np.abs(cov - np.swapaxes(cov, -1, -2)).max(axis=(-2, -1)) if cov.size else 0.0
    if np.any(asymmetry > 1e-10 * scale):
        raise ValueError(f"{name} must be symmetric; pass (cov + cov.T) / 2 if it is rounding")
    eig = np.linalg.eigvalsh(cov)
    largest = np.abs(eig).max(axis=-1, keepdims=True) if eig.size else eig
    if np.any(eig < -PSD_TOLERANCE * largest):
        raise ValueError(
            f"{name} must be positive semi-definite (smallest eigenvalue "
            f"{float(eig.min()):.3g}); clip negative eigenvalues or add a diagonal term"
        )


def check_n_models(k: int, name: str = "quality") -> int:
    """A number of models in ``1..MAX_MODELS``."""
    if k < 1:
        raise ValueError(f"{name} must contain at least one model")
    if k > MAX_MODELS:
        raise ValueError(
            f"{name} has {k} models; at most {MAX_MODELS} are supported: split the pool"
        )
    return k


def check_rows(rows: Any, n_rows: int, name: str, *, unique: bool = False) -> NDArray[np.int64]:
    """1-D integer row indices into a table of ``n_rows`` rows (a boolean mask is accepted)."""
    idx = np.asarray(rows)
    if idx.dtype == np.bool_:
        if idx.shape != (n_rows,):
            raise ValueError(
                f"{name} as a boolean mask must have shape ({n_rows},), got {idx.shape}"
            )
        return np.flatnonzero(idx).astype(np.int64)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(
            f"{name} must be a 1-D sequence of integer row indices (or a boolean mask), got "
            f"dtype {idx.dtype} and shape {idx.shape}"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
        raise ValueError(f"{name} holds row indices outside 0..{n_rows - 1}")
    if unique and np.unique(idx).size != idx.size:
        raise ValueError(f"{name} must not repeat a row")
    return idx.astype(np.int64)


# --------------------------------------------------------------------------- models and answers


def check_model_names(models: Any, name: str = "models") -> tuple[str, ...]:
    """Model names: a non-empty sequence of distinct non-empty strings, at most MAX_MODELS."""
    if isinstance(models, (str, bytes)) or not isinstance(models, Iterable):
        raise TypeError(f"{name} must be a sequence of model names (strings)")
    names = list(models)
    if not names or not all(isinstance(m, str) and m for m in names):
        raise ValueError(f"{name} must be a non-empty sequence of model names (strings)")
    if len(set(names)) != len(names):
        raise ValueError(f"{name} contains duplicates: {names}")
    if len(names) > MAX_MODELS:
        raise ValueError(
            f"{name} has {len(names)} models; at most {MAX_MODELS} are supported: split the pool"
        )
    return tuple(names)


def model_index(index: Mapping[str, int], model: Any, what: str = "model") -> int:
    """Position of the model named ``model``; :class:`UnknownModelError` if it is unknown."""
    try:
        return index[model]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown {what} {model!r}; known models: {list(index)}") from None


def check_answers(answers: Sequence[Sequence[Any]], n: int, k: int, *, full: bool) -> None:
    """``answers`` has ``n`` rows of ``k`` entries (``None`` = not run; ``full``: none missing)."""
    if isinstance(answers, (str, bytes)) or not hasattr(answers, "__len__"):
        raise TypeError("answers must be a sequence with one row per query")
    if len(answers) != n:
        raise ValueError(f"answers has {len(answers)} rows; expected one per query ({n})")
    prev: Any = None  # the same row object again (``[row] * n``) was checked just now
    for i, row in enumerate(answers):
        if row is prev and (type(row) is list or type(row) is tuple):
            continue
        prev = row
        if isinstance(row, (str, bytes)) or not hasattr(row, "__len__"):
            raise TypeError(f"answers[{i}] must be a sequence with one entry per model")
        if len(row) != k:
            raise ValueError(f"answers[{i}] has {len(row)} entries; expected one per model ({k})")
        if full and any(a is None for a in row):
            raise ValueError(
                f"answers[{i}] has a missing answer; fitting needs every model's answer"
            )


def ran_mask(answers: Sequence[Sequence[Any]], k: int) -> NDArray[np.bool_]:
    """Boolean ``(n, k)`` mask of the models that have answered (answer is not ``None``)."""
    check_answers(answers, len(answers), k, full=False)
    mask = np.zeros((len(answers), k), dtype=bool)
    for i, row in enumerate(answers):
        for j, a in enumerate(row):
            mask[i, j] = a is not None
    return mask


def ran_indices(ran: Any, k: int, name: str = "ran") -> NDArray[np.uint8]:
    """The ``(k,)`` uint8 mask of models already run, from indices or a boolean mask."""
    mask = np.zeros(k, dtype=np.uint8)
    if ran is None or (type(ran) is tuple and not ran):
        return mask
    arr = np.asarray(ran)
    if arr.dtype == np.bool_:
        if arr.shape != (k,):
            raise ValueError(f"{name} as a boolean mask must have shape ({k},), got {arr.shape}")
        return arr.astype(np.uint8)
    if arr.size == 0:
        return mask
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be model indices (ints) or a boolean mask, got {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of model indices, got shape {arr.shape}")
    if np.any(arr < 0) or np.any(arr >= k):
        raise ValueError(f"{name} holds model indices outside 0..{k - 1}: {arr.tolist()}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{name} holds a model twice: {arr.tolist()}")
    mask[arr] = 1
    return mask


__all__ = [
    "MAX_MAGNITUDE",
    "MAX_MODELS",
    "MAX_SAMPLES",
    "MAX_THREADS",
    "PSD_TOLERANCE",
    "UnknownModelError",
    "all_within",
    "check_answers",
    "check_bool",
    "check_bounds",
    "check_choice",
    "check_depth",
    "check_int",
    "check_model_names",
    "check_n_models",
    "check_n_samples",
    "check_number",
    "check_psd",
    "check_rounding_digits",
    "check_rows",
    "check_seed",
    "float_array",
    "is_int",
    "is_real",
    "model_index",
    "ran_indices",
    "ran_mask",
]
