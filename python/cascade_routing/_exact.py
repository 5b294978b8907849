"""Exact sums and correctly rounded means of float64 values (docs/algorithm.md §9).

Every finite float64 is an integer multiple of ``2**-1074``: ``sign · mantissa · 2**(E − 1075)``
with the biased exponent ``E`` (1 for subnormals) and the 53-bit integer mantissa.
:func:`exact_sum` returns that integer for the sum of an array, so partial sums computed
anywhere (on Dask workers, per partition) add up to the same integer in any order.
:func:`exact_mean_of` divides it by the count with one correctly rounded division.

The fit uses these means for every replay and for the cost order of the models, so the
in-memory fit and the fit on a Dask cluster compute the same numbers from the same data.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_UNIT_EXP = 1074
# Values per vectorised step (stays in cache) and per exact flush of the per-exponent sums
# (|mantissa half| < 2**27, so 2**25 of them sum exactly in float64).
_STEP = 1 << 16
_FLUSH = 1 << 25


def exact_sum(values: ArrayLike) -> int:
    """The exact sum of finite float64 ``values``, as an integer number of ``2**-1074``.

    Vectorised: each value's bits give its integer mantissa and exponent; the mantissas'
    high and low 26-bit halves are summed per exponent with ``bincount`` (exact: the partial
    sums stay below 2**53), and the per-exponent sums are combined as Python integers.
    """
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    bits = x.view(np.int64)
    total = 0
    for flush in range(0, x.size, _FLUSH):
        hi_t = np.zeros(2048)
        lo_t = np.zeros(2048)
        for start in range(flush, min(flush + _FLUSH, x.size), _STEP):
            b = bits[start : start + _STEP]
            biased = (b >> 52) & 0x7FF
            mant = (b & ((1 << 52) - 1)) | ((biased != 0).astype(np.int64) << 52)
            mant = np.where(b < 0, -mant, mant)
            exp = np.maximum(biased, 1)
            hi_t += np.bincount(exp, weights=mant >> 26, minlength=2048)
            lo_t += np.bincount(exp, weights=mant & ((1 << 26) - 1), minlength=2048)
        for e in np.flatnonzero((hi_t != 0) | (lo_t != 0)).tolist():
            total += ((int(hi_t[e]) << 26) + int(lo_t[e])) << (e - 1)
    return total


def exact_mean_of(total: int, count: int) -> float:
    """``total · 2**-1074 / count`` correctly rounded (one integer division); 0 if empty."""
    if count <= 0:
        return 0.0
    return total / (count << _UNIT_EXP)


def exact_mean(values: ArrayLike) -> float:
    """The correctly rounded mean of ``values`` (independent of summation order)."""
    x = np.asarray(values, dtype=np.float64)
    return exact_mean_of(exact_sum(x), x.size)


def exact_column_means(table: ArrayLike) -> list[float]:
    """:func:`exact_mean` of each column of a ``(n, k)`` table."""
    t = np.asarray(table, dtype=np.float64)
    return [exact_mean(t[:, j]) for j in range(t.shape[1])]


__all__ = ["exact_column_means", "exact_mean", "exact_mean_of", "exact_sum"]
