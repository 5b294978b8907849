"""Numba versions of the reference kernels: the same source, compiled (optional extra).

Importing this module raises ImportError when numba is not installed; the backend selector then
falls back to the NumPy reference.

Ctrl-C: a jitted loop cannot be interrupted. Python runs signal handlers between bytecodes, and
a compiled kernel runs none until it returns, so SIGINT during a long Numba search is only
raised once the search has finished. The C++ backend polls for signals during a long call and
stops within about 100 ms (``cpp/bindings/interrupt.hpp``), and the NumPy reference checks
between its vectorised steps; with Numba, keep the work cap (``max_work``, ``max_depth``) low.
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
for _name in (
    "threshold_continues",
    "select_best",
    "has_bounds",
    "clip_values",
    "transform_rows",
    "make_workspace",
    "search_with_workspace",
):
    _ns[_name] = _jit(_rebind(getattr(ref, _name)))


def _all_arguments(fn, compiled):  # type: ignore[no-untyped-def]
    """``compiled`` (the Numba version of ``fn``), always called with every argument given.

    Numba's dispatcher resolves a call that leaves out a default argument in Python, about
    70 us per call (more than a whole search with 11 models), so the defaults (the trailing
    quality bounds) are filled in here first.
    """
    import inspect

    defaults = fn.__defaults__ or ()
    n_all = fn.__code__.co_argcount
    n_required = n_all - len(defaults)
    signature = inspect.signature(fn)

    def call(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(args) == n_all and not kwargs:  # the engine's calls
            return compiled(*args)
        if not kwargs and n_required <= len(args) < n_all:
            return compiled(*args, *defaults[len(args) - n_required :])
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return compiled(*bound.args)

    call.__name__, call.__qualname__, call.__doc__ = fn.__name__, fn.__name__, fn.__doc__
    return call


search = _all_arguments(ref.search_kernel, _jit(_rebind(ref.search_kernel)))
_search_batch = _all_arguments(ref.search_batch_kernel, _jit(_rebind(ref.search_batch_kernel)))
_replay = _all_arguments(ref.replay_two_phase_kernel, _jit(_rebind(ref.replay_two_phase_kernel)))


def search_batch(*args, n_threads=1, **kwargs):  # type: ignore[no-untyped-def]
    return _search_batch(*args, **kwargs)


def replay_two_phase(*args, n_threads=1, **kwargs):  # type: ignore[no-untyped-def]
    return _replay(*args, **kwargs)
