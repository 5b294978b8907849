"""Numba versions of the reference kernels: the same source, compiled (optional extra).

Importing this module raises ImportError when numba is not installed; the backend selector then
falls back to the NumPy reference.
"""

from __future__ import annotations

import numba

from . import _reference as ref

_jit = numba.njit(cache=True, nogil=True)

cholesky_psd = _jit(ref.cholesky_psd)
_round_key = _jit(ref._round_key)

# The kernels call each other through module globals; rebind them to the compiled versions in a
# private namespace so that the compiled search calls compiled helpers.
_ns = dict(vars(ref))
_ns["_round_key"] = _round_key


def _rebind(fn):  # type: ignore[no-untyped-def]
    import types

    return types.FunctionType(fn.__code__, _ns, fn.__name__, fn.__defaults__, fn.__closure__)


# NumPy's pairwise summation order, as the reference (a.sum()) and the C++ core use it; the
# function recurses, so its global name must resolve to the compiled version.
numpy_sum = _jit(_rebind(ref.numpy_sum))
_ns["numpy_sum"] = numpy_sum
_ns["_row_sum"] = numpy_sum

_ns["max_into_and_sum"] = _jit(_rebind(ref.max_into_and_sum_fused))
for _name in ("transform_rows", "make_workspace", "search_with_workspace"):
    _ns[_name] = _jit(_rebind(getattr(ref, _name)))

search = _jit(_rebind(ref.search_kernel))
_search_batch = _jit(_rebind(ref.search_batch_kernel))
_replay = _jit(_rebind(ref.replay_two_phase_kernel))


def search_batch(*args, n_threads=1):  # type: ignore[no-untyped-def]
    return _search_batch(*args)


def replay_two_phase(*args, n_threads=1):  # type: ignore[no-untyped-def]
    return _replay(*args)
