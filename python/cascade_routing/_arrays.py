"""Conversion of user arrays at the package boundary: one place for the checks and messages."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray


def finite_array(
    value: Any,
    name: str,
    ndim: int,
    *,
    shape: tuple[int, ...] | None = None,
    layout: str = "",
    allow_neg_inf: bool = False,
    hint: str = "",
) -> NDArray[np.float64]:
    """``value`` as a C-contiguous float64 array of ``ndim`` dimensions with finite values.

    Booleans and integers are accepted and converted. Raises ``TypeError`` for a non-numeric
    dtype and ``ValueError`` for a wrong number of dimensions, a shape other than ``shape``,
    or NaN / infinite values (``-inf`` passes with ``allow_neg_inf``). ``layout`` describes the
    dimensions in messages (e.g. ``"queries x models"``); ``hint`` is appended to the NaN
    message. The result never shares memory with ``value`` unless it already was such an array.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    described = f" ({layout})" if layout else ""
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D{described}, got shape {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}{described}, got {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    bad = np.isnan(out) | (out == np.inf) if allow_neg_inf else ~np.isfinite(out)
    if bad.any():
        what = "NaN or +inf values" if allow_neg_inf else "NaN or infinite values"
        raise ValueError(f"{name} contains {what}" + (f"; {hint}" if hint else ""))
    return out


#: Largest magnitude accepted for estimates: far beyond any real value, and small enough
#: that no sum or product in the search overflows (the engine applies the same limit).
MAX_MAGNITUDE = 1e100

_min = np.minimum.reduce  # the ufunc reductions directly: no Python wrapper per call
_max = np.maximum.reduce


def all_within(arr: NDArray[np.float64], low: float, high: float) -> bool:
    """Whether every value lies in ``[low, high]`` (False for NaN); fast for small arrays."""
    if arr.size == 0:
        return True
    return bool(low <= _min(arr, axis=None) and _max(arr, axis=None) <= high)
