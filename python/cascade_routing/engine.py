"""The per-decision optimisation: expected maxima and the supermodel search.

Everything here validates its input once, converts it to C-contiguous float64, and hands it to
the active backend (C++ by default; see :func:`cascade_routing.backend`).
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _backend
from .options import SearchOptions, UncertaintyMode
from .validation import (
    MAX_MAGNITUDE,
    MAX_MODELS,
    MAX_SAMPLES,
    MAX_THREADS,
    _all_finite,
    check_bounds,
    check_choice,
    check_int,
    check_n_models,
    check_n_samples,
    check_psd,
    check_rounding_digits,
    check_seed,
    float_array,
    ran_indices,
)

Prefer = Literal["cheapest", "expensive"]

#: Default cap on the work of one decision: candidate supermodels times quasi-Monte Carlo
#: samples (one sample per candidate without uncertainty). About a quarter of a second of
#: compiled search on one core; see :func:`search_work` and docs/algorithm.md §11.
DEFAULT_MAX_WORK = 1 << 28

#: Bytes of Sobol samples kept in memory between calls (the least recently used go first).
NORMALS_CACHE_BYTES = 64 << 20


# --------------------------------------------------------------------------- validation


def search_work(
    k: int, n_ran: int, max_depth: int | None, n_samples: int, prefixes_only: bool = False
) -> int:
    """Worst-case work of one decision: candidates times samples (before any pruning).

    The candidates are the supersets of the ``n_ran`` run models with at most ``max_depth``
    members: ``sum_{i=1..d-n_ran} C(k - n_ran, i)``, plus the run-set itself (stopping) when
    a model has run; with ``prefixes_only`` only the ``d - n_ran`` longer prefixes
    (docs/algorithm.md §11). Without uncertainty pass ``n_samples=1``.
    """
    return _candidates(int(k), int(n_ran), max_depth, bool(prefixes_only)) * max(n_samples, 1)


@functools.lru_cache(maxsize=1024)
def _candidates(k: int, n_ran: int, max_depth: int | None, prefixes_only: bool) -> int:
    """Candidates of :func:`search_work` (cached: every decision asks it again)."""
    free = k - n_ran
    depth = k if max_depth is None else min(max_depth, k)
    add = max(min(depth - n_ran, free), 0)
    if prefixes_only:
        return (1 if n_ran else 0) + add
    return (1 if n_ran else 0) + sum(math.comb(free, i) for i in range(1, add + 1))


def largest_depth_within(
    k: int, n_samples: int, max_work: int, prefixes_only: bool = False
) -> int:
    """The largest ``max_depth`` whose worst-case decision stays within ``max_work``."""
    depth = 0
    while depth < k and search_work(k, 0, depth + 1, n_samples, prefixes_only) <= max_work:
        depth += 1
    return depth


def check_work(
    k: int,
    n_ran: int,
    max_depth: int | None,
    n_samples: int,
    max_work: Any,
    prefixes_only: bool = False,
) -> int:
    """Raise ``ValueError`` naming ``max_depth`` if a decision could exceed ``max_work``."""
    cap = (
        max_work if type(max_work) is int and max_work >= 1 else check_int(max_work, "max_work", 1)
    )
    work = search_work(k, n_ran, max_depth, n_samples, prefixes_only)
    if work > cap:
        deepest = largest_depth_within(k, n_samples, cap, prefixes_only)
        raise ValueError(
            f"a decision over {k} models with max_depth={max_depth} may score "
            f"{work // max(n_samples, 1):,} supermodels x {max(n_samples, 1)} samples = "
            f"{work:,} > max_work={cap:,}; pass max_depth <= {max(deepest, 1)}, fewer "
            "n_samples, or a larger max_work (see docs/algorithm.md §11)"
        )
    return cap


def _check_shape(arr: NDArray[Any], shape: tuple[int, ...], name: str, hint: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} ({hint}), got {arr.shape}")


_FLOAT64 = np.dtype(np.float64)
#: Zero-size placeholders for the arrays a mode does not use (nothing can be written to them).
_NO_SD = np.zeros((0,))
_NO_CHOL = np.zeros((0, 0))
_POWERS_OF_TWO = frozenset(
    1 << i for i in range(MAX_SAMPLES.bit_length()) if 1 << i <= MAX_SAMPLES
)


def _valid_vector(value: Any, nonnegative: bool = False) -> NDArray[np.float64] | None:
    """``value`` itself if it is a 1-D C-contiguous float64 array of at most ``MAX_MODELS``
    values that :func:`float_array` would accept unchanged; otherwise ``None`` (then call
    :func:`float_array`, which converts or raises with the full message).

    The fast path of one decision: for a few values, Python's ``sum``, ``min`` and ``max``
    over ``tolist()`` cost less than NumPy's reductions. A finite sum proves every value
    finite (a NaN or an infinity makes it NaN or infinite; an overflow only sends the call
    to the slow path), and only then are ``min`` and ``max`` meaningful.
    """
    if (
        type(value) is np.ndarray
        and value.dtype is _FLOAT64
        and value.ndim == 1
        and 0 < value.shape[0] <= MAX_MODELS
        and value.flags.c_contiguous
    ):
        vals = value.tolist()
        if (
            math.isfinite(sum(vals))
            and (0.0 if nonnegative else -MAX_MAGNITUDE) <= min(vals)
            and max(vals) <= MAX_MAGNITUDE
        ):
            return value
    return None


def _uncertainty(
    var: Any, cov: Any, lead: tuple[int, ...], k: int
) -> tuple[UncertaintyMode, NDArray[np.float64], NDArray[np.float64]]:
    """(mode, sd, chol) for exact, independent or full uncertainty."""
    n_lead = len(lead)
    if var is not None and cov is not None:
        raise ValueError("pass either var (independent) or cov (full covariance), not both")
    if var is not None:
        fast = _valid_vector(var, nonnegative=True) if not n_lead else None
        if fast is not None and fast.shape[0] == k:
            return UncertaintyMode.INDEPENDENT, np.sqrt(fast), _NO_CHOL
        v = float_array(var, "var", 1 + n_lead, nonnegative=True)
        _check_shape(v, lead + (k,), "var", "one variance per model")
        return UncertaintyMode.INDEPENDENT, np.sqrt(v), np.zeros(lead + (0, 0))
    if cov is not None:
        c = float_array(cov, "cov", 2 + n_lead)
        _check_shape(c, lead + (k, k), "cov", "a k x k covariance matrix")
        check_psd(c, "cov")
        be = _backend.active()
        if n_lead == 0:
            chol = be.cholesky_psd(c)
        elif c.shape[0]:
            chol = np.stack([be.cholesky_psd(c[r]) for r in range(c.shape[0])])
        else:
            chol = np.zeros(lead + (k, k))
        return (
            UncertaintyMode.COVARIANCE,
            np.zeros(lead + (0,)) if n_lead else _NO_SD,
            np.ascontiguousarray(chol, dtype=np.float64),
        )
    if not n_lead:
        return UncertaintyMode.EXACT, _NO_SD, _NO_CHOL
    return UncertaintyMode.EXACT, np.zeros(lead + (0,)), np.zeros(lead + (0, 0))


_normals_cache: OrderedDict[tuple[int, int, int], NDArray[np.float64]] = OrderedDict()
_normals_lock = threading.Lock()


def standard_normals(k: int, n_samples: int = 128, seed: int = 0) -> NDArray[np.float64]:
    """Fixed scrambled-Sobol standard normals ``(n_samples, k)`` (read-only, cached).

    Every quality sample of a decision is ``q + U L^T`` with these ``U``, so all candidate
    supermodels share them (common random numbers). The cache keeps at most
    :data:`NORMALS_CACHE_BYTES` bytes, least recently used first out.
    """
    key = (k, n_samples, seed)
    if type(k) is int and type(n_samples) is int and type(seed) is int:  # bools: validate
        # A hit needs no lock: get and move_to_end are each atomic on the OrderedDict; a key
        # evicted between the two by another thread is still a valid array to return.
        hit = _normals_cache.get(key)
        if hit is not None:
            try:
                _normals_cache.move_to_end(key)
            except KeyError:
                pass
            return hit
    check_int(k, "k", 1, MAX_MODELS)
    n = check_n_samples(n_samples)
    s = check_seed(seed)
    from scipy.stats import norm, qmc

    points = qmc.Sobol(d=k, scramble=True, seed=s).random(n)
    points = np.clip(points, 1e-12, 1.0 - 1e-12)
    out = np.ascontiguousarray(norm.ppf(points), dtype=np.float64)
    out.setflags(write=False)
    with _normals_lock:
        _normals_cache[key] = out
        _normals_cache.move_to_end(key)
        total = sum(a.nbytes for a in _normals_cache.values())
        while total > NORMALS_CACHE_BYTES and len(_normals_cache) > 1:
            _, dropped = _normals_cache.popitem(last=False)
            total -= dropped.nbytes
    return out


def _check_prefix(ran: NDArray[np.uint8], name: str = "ran") -> None:
    """With prefixes_only the run models must be m_0 .. m_{j-1}."""
    ran2 = np.atleast_2d(ran)
    n_run = ran2.sum(axis=1)
    idx = np.arange(ran2.shape[1])
    if np.any((ran2 != 0) != (idx[None, :] < n_run[:, None])):
        raise ValueError(
            f"with prefixes_only=True, {name} must be a prefix of the model order (0, 1, ..., j-1)"
        )


def search_options(
    k: int,
    n_ran_max: int,
    *,
    max_depth: Any,
    force_order: Any,
    prefixes_only: Any,
    prune: Any,
    rounding_digits: Any,
    quality_bounds: Any,
) -> SearchOptions:
    """Validated :class:`SearchOptions` for ``k`` models with up to ``n_ran_max`` run."""
    if (
        (max_depth is None or type(max_depth) is int)
        and type(force_order) is bool
        and type(prefixes_only) is bool
        and type(prune) is bool
        and (rounding_digits is None or type(rounding_digits) is int)
        and quality_bounds is None
    ):
        # The common call (plain Python values): validated once per distinct combination.
        return _cached_search_options(
            k, n_ran_max, max_depth, force_order, prefixes_only, prune, rounding_digits, None
        )
    return _search_options(
        k, n_ran_max, max_depth, force_order, prefixes_only, prune, rounding_digits, quality_bounds
    )


#: check_work of calls whose arguments are all ints and bools (a refused call raises every
#: time: exceptions are not cached).
_check_work_cached = functools.lru_cache(maxsize=1024, typed=True)(check_work)


def _search_options(
    k: int,
    n_ran_max: int,
    max_depth: Any,
    force_order: Any,
    prefixes_only: Any,
    prune: Any,
    rounding_digits: Any,
    quality_bounds: Any,
) -> SearchOptions:
    if max_depth is None:
        depth = k
    else:
        depth = min(check_int(max_depth, "max_depth", 1), k)
    if depth < n_ran_max:
        raise ValueError(
            f"max_depth={max_depth} is smaller than the number of models already run "
            f"({n_ran_max}); raise max_depth"
        )
    digits = check_rounding_digits(rounding_digits)
    lower, upper = check_bounds(quality_bounds)
    return SearchOptions(
        max_depth=depth,
        force_order=bool(force_order),
        prefixes_only=bool(prefixes_only),
        prune=bool(prune),
        digits=-1 if digits is None else digits,
        quality_lower=lower,
        quality_upper=upper,
    )


#: Only plain ints, bools and None reach it (see search_options), so equal keys are equal
#: arguments; SearchOptions is frozen, so sharing one is safe.
_cached_search_options = functools.lru_cache(maxsize=256, typed=True)(_search_options)


def _check_lam(lam: Any, n: int | None) -> NDArray[np.float64]:
    if n is None and type(lam) is float:
        if not 0.0 <= lam <= MAX_MAGNITUDE:
            raise ValueError(
                f"lam must be finite, non-negative and at most {MAX_MAGNITUDE:g}, got {lam}"
            )
        return np.array(lam)
    if (
        isinstance(lam, (int, np.integer))
        and not isinstance(lam, bool)
        and abs(int(lam)) > MAX_MAGNITUDE
    ):
        raise ValueError(f"lam must be at most {MAX_MAGNITUDE:g}, got {lam}")
    try:
        arr = np.asarray(lam)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"lam must be a number or a 1-D array of numbers ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"lam must be a real number, got {type(lam).__name__}")
    if n is None:
        if arr.ndim != 0:
            raise ValueError(f"lam must be a scalar, got shape {arr.shape}")
    else:
        if arr.ndim == 0:
            arr = np.full(n, float(arr))
        elif arr.shape != (n,):
            raise ValueError(f"lam must be a scalar or have shape ({n},), got {arr.shape}")
    out = np.array(arr, dtype=np.float64, order="C")
    if not _all_finite(out) or (out.size and (out.min() < 0 or out.max() > MAX_MAGNITUDE)):
        raise ValueError(f"lam must be finite, non-negative and at most {MAX_MAGNITUDE:g}")
    return out


# --------------------------------------------------------------------------- public API


def expected_max(
    mean: ArrayLike,
    var: ArrayLike | None = None,
    cov: ArrayLike | None = None,
    *,
    n_samples: int = 128,
    seed: int = 0,
    quality_bounds: tuple[float, float] | None = None,
) -> float:
    """Expected maximum ``E[max_i Z_i]`` of a Gaussian vector ``Z ~ N(mean, Σ)``.

    With ``quality_bounds=(lower, upper)`` every sample is clipped first:
    ``E[max_i clip(Z_i, lower, upper)]``.

    Parameters
    ----------
    mean : array_like, shape (k,)
        Means of the quality estimates.
    var : array_like, shape (k,), optional
        Independent variances (``Σ = diag(var)``).
    cov : array_like, shape (k, k), optional
        Full covariance (symmetric positive semi-definite). Without ``var`` and ``cov`` the
        result is ``max(mean)``.
    n_samples : int
        Number of scrambled Sobol points (a power of two).
    seed : int
        Seed of the Sobol scrambling.
    quality_bounds : (float, float), optional
        ``(lower, upper)`` with ``lower < upper`` (``-inf`` / ``inf`` for one side only): clip
        every sample (without ``var`` and ``cov``: every mean) to this range before taking the
        maximum, e.g. ``(0, 1)`` for qualities that are probabilities. ``None``: no clipping.

    Notes
    -----
    Quasi-Monte Carlo with the same fixed samples the search uses. For up to 11 models the
    error is below ``0.06 * max(sd)`` with 128 samples and below ``0.006 * max(sd)`` with 4096
    (measured worst cases 0.047 and 0.004, for many identical independent models; 2-3 models
    stay below 0.02 and 0.0005). Clipping to ``quality_bounds`` keeps within these bounds
    (measured worst cases 0.035 and 0.002).
    """
    q = float_array(mean, "mean", 1)
    k = check_n_models(q.shape[0], "mean")
    mode, sd, chol = _uncertainty(var, cov, (), k)
    lower, upper = check_bounds(quality_bounds)
    from ._reference import clip_values, has_bounds, transform_samples

    if mode == 0:
        if has_bounds(lower, upper):  # type: ignore[no-untyped-call]
            q = q.copy()
            clip_values(q, lower, upper)  # type: ignore[no-untyped-call]
        return float(q.max())
    normals = standard_normals(k, check_n_samples(n_samples), check_seed(seed))
    z = transform_samples(q, mode, sd, chol, normals, lower, upper)  # type: ignore[no-untyped-call]
    return float(z.max(axis=1).sum() / z.shape[0])


class SearchResult(NamedTuple):
    """Outcome of one supermodel search.

    Attributes
    ----------
    next_model : int or None
        The model to run next, or ``None`` to stop.
    supermodel : tuple of int
        The best supermodel ``M*`` (sorted model indices, including those already run).
    utility : float
        ``τ(M*) = Q(M*) − λ·C(M*)`` (unrounded).
    quality, cost : float
        ``Q(M*)`` and ``C(M*)`` (sunk costs of run models included).
    evaluated : int
        Candidate supermodels scored (pruned children included).
    """

    next_model: int | None
    supermodel: tuple[int, ...]
    utility: float
    quality: float
    cost: float
    evaluated: int


@dataclass(frozen=True)
class BatchSearchResult:
    """Outcome of :func:`search_supermodel_batch` for ``n`` queries (arrays of length ``n``).

    ``next_model`` is -1 where the search stops; ``supermodel`` is a boolean ``(n, k)`` mask.
    """

    next_model: NDArray[np.int64]
    supermodel: NDArray[np.bool_]
    utility: NDArray[np.float64]
    quality: NDArray[np.float64]
    cost: NDArray[np.float64]
    evaluated: NDArray[np.int64]


def search_supermodel(
    quality: ArrayLike,
    cost: ArrayLike,
    lam: float,
    *,
    var: ArrayLike | None = None,
    cov: ArrayLike | None = None,
    ran: Iterable[int] | ArrayLike = (),
    max_depth: int | None = None,
    force_order: bool = True,
    prefixes_only: bool = False,
    prune: bool = True,
    prefer: Prefer = "cheapest",
    rounding_digits: int | None = 8,
    n_samples: int = 128,
    seed: int = 0,
    quality_bounds: tuple[float, float] | None = None,
    max_work: int = DEFAULT_MAX_WORK,
) -> SearchResult:
    """Find the supermodel ``M ⊇ ran`` with the highest utility ``Q(M) − λ·C(M)``.

    Parameters
    ----------
    quality, cost : array_like, shape (k,)
        Quality estimates and cost estimates (non-negative) of the ``k`` models, in model order.
    lam : float
        Cost multiplier ``λ ≥ 0``.
    var, cov : array_like, optional
        Uncertainty of the quality estimates: independent variances ``(k,)`` or a covariance
        ``(k, k)``. Neither: the means are taken as exact.
    ran : sequence of int or bool mask
        Models already run on this query.
    max_depth : int, optional
        Largest supermodel size (default ``k``). ``max_depth=1`` with nothing run is routing.
    force_order : bool
        New models must come after every run model in the model order; the next model is the
        earliest of ``M* \\ ran``. Without it, the cheapest of ``M* \\ ran`` runs next.
    prefixes_only : bool
        Only prefixes ``m_0 .. m_j`` are candidates (the paper's optimal cascade); ``ran`` must
        be a prefix. Pruning is not exact for prefixes and is not applied.
    prune : bool
        Drop supermodels with a negative marginal gain (exact; never changes the result).
    prefer : {"cheapest", "expensive"}
        Which of several best supermodels (equal rounded utility) to take.
    rounding_digits : int or None
        Utilities are rounded to this many decimals before comparing (``None``: exact).
    n_samples, seed : int
        Sobol samples for the expected maximum (ignored without uncertainty).
    quality_bounds : (float, float), optional
        ``(lower, upper)``, ``lower < upper`` (``-inf`` / ``inf`` for one side only): every
        quality sample (without uncertainty: every mean) is clipped to this range, so
        ``Q(M) = E[max_{i in M} clip(Z_i)]``; e.g. ``(0, 1)`` when qualities are
        probabilities, so that unbounded Gaussian tails do not overstate the value of running
        several uncertain models. ``None``: no clipping. Pruning stays exact.
    max_work : int
        Cap on the worst-case work of the decision, candidate supermodels times samples
        (:func:`search_work`; default :data:`DEFAULT_MAX_WORK`). A search that could exceed
        it raises ``ValueError`` naming ``max_depth`` before any work is done. A long search
        stops within about 100 ms of Ctrl-C (C++ backend).

    Returns
    -------
    SearchResult
    """
    # Already-valid float64 vectors, a float lam, nothing run and plain-int options take fast
    # paths; anything else goes through the full validation (same checks, same messages).
    q = _valid_vector(quality)
    if q is None:
        q = float_array(quality, "quality", 1)
    k = check_n_models(q.shape[0])
    c = _valid_vector(cost, nonnegative=True)
    if c is None:
        c = float_array(cost, "cost", 1, nonnegative=True)
    _check_shape(c, (k,), "cost", "one cost per model")
    if type(lam) is float and 0.0 <= lam <= MAX_MAGNITUDE:
        lam_v = lam
    else:
        lam_v = float(_check_lam(lam, None))
    if ran is None or (type(ran) is tuple and not ran):
        ran_m = np.zeros(k, dtype=np.uint8)
        n_ran = 0
    else:
        ran_m = ran_indices(ran, k)
        n_ran = int(ran_m.sum())
    if type(prefer) is not str or (prefer != "cheapest" and prefer != "expensive"):
        check_choice(prefer, "prefer", ("cheapest", "expensive"))
    options = search_options(
        k,
        n_ran,
        max_depth=max_depth,
        force_order=force_order,
        prefixes_only=prefixes_only,
        prune=prune,
        rounding_digits=rounding_digits,
        quality_bounds=quality_bounds,
    )
    if prefixes_only:
        _check_prefix(ran_m)
    mode, sd, chol = _uncertainty(var, cov, (), k)
    if not mode:
        n = 1
    elif type(n_samples) is int and n_samples in _POWERS_OF_TWO:
        n = n_samples
    else:
        n = check_n_samples(n_samples)
    if type(max_work) is int:
        _check_work_cached(k, n_ran, options.max_depth, n, max_work, options.prefixes_only)
    else:
        check_work(k, n_ran, options.max_depth, n, max_work, options.prefixes_only)
    if not mode:
        normals = np.zeros((0, k))
    elif type(seed) is int and seed >= 0:
        normals = standard_normals(k, n, seed)
    else:
        normals = standard_normals(k, n, check_seed(seed))
    nm, mask, util, qual, cst, evaluated = _backend.active().run_search(
        q, c, lam_v, mode, sd, chol, normals, ran_m, options, prefer == "expensive"
    )
    members = tuple([i for i, member in enumerate(np.asarray(mask).tolist()) if member])
    return SearchResult(
        None if nm < 0 else int(nm), members, float(util), float(qual), float(cst), int(evaluated)
    )


def search_supermodel_batch(
    quality: ArrayLike,
    cost: ArrayLike,
    lam: float | ArrayLike,
    *,
    var: ArrayLike | None = None,
    cov: ArrayLike | None = None,
    ran: ArrayLike | None = None,
    max_depth: int | None = None,
    force_order: bool = True,
    prefixes_only: bool = False,
    prune: bool = True,
    prefer: Prefer | ArrayLike = "cheapest",
    rounding_digits: int | None = 8,
    n_samples: int = 128,
    seed: int = 0,
    quality_bounds: tuple[float, float] | None = None,
    n_threads: int = 1,
    max_work: int = DEFAULT_MAX_WORK,
) -> BatchSearchResult:
    """:func:`search_supermodel` for ``n`` queries at once (the GIL is released).

    ``quality``, ``cost``: ``(n, k)``; ``lam``: scalar or ``(n,)``; ``var``: ``(n, k)``;
    ``cov``: ``(n, k, k)``; ``ran``: boolean ``(n, k)``; ``prefer``: a string for all queries or
    a boolean ``(n,)`` array (True = prefer the most expensive of tied best supermodels);
    ``quality_bounds``: one ``(lower, upper)`` pair for all queries.
    ``n_threads`` threads share the queries (C++ backend; 0 = one per core).
    ``max_work`` caps the worst-case work of each query's decision (see
    :func:`search_supermodel`).
    """
    q = float_array(quality, "quality", 2)
    n, k = q.shape
    check_n_models(k)
    c = float_array(cost, "cost", 2, nonnegative=True)
    _check_shape(c, (n, k), "cost", "one cost per query and model")
    lam_v = _check_lam(lam, n)
    if ran is None:
        ran_m = np.zeros((n, k), dtype=np.uint8)
    else:
        r = np.asarray(ran)
        if r.dtype != np.bool_:
            if r.dtype == object or not np.issubdtype(r.dtype, np.integer):
                raise TypeError(f"ran must be a boolean (n, k) mask, got dtype {r.dtype}")
            if np.any((r != 0) & (r != 1)):
                raise ValueError("ran must be a boolean (n, k) mask (0/1 values)")
        _check_shape(r, (n, k), "ran", "a boolean mask of the models run per query")
        ran_m = np.ascontiguousarray(r, dtype=np.uint8)
    n_ran_max = int(ran_m.sum(axis=1).max()) if n else 0
    options = search_options(
        k,
        n_ran_max,
        max_depth=max_depth,
        force_order=force_order,
        prefixes_only=prefixes_only,
        prune=prune,
        rounding_digits=rounding_digits,
        quality_bounds=quality_bounds,
    )
    if prefixes_only and n:
        _check_prefix(ran_m)
    if isinstance(prefer, str):
        check_choice(prefer, "prefer", ("cheapest", "expensive"))
        pref = np.full(n, prefer == "expensive", dtype=np.uint8)
    else:
        p = np.asarray(prefer)
        if p.dtype != np.bool_:
            raise TypeError(
                f"prefer must be 'cheapest', 'expensive' or a boolean array, got {p.dtype}"
            )
        _check_shape(p, (n,), "prefer", "one tie-breaking flag per query")
        pref = np.ascontiguousarray(p, dtype=np.uint8)
    mode, sd, chol = _uncertainty(var, cov, (n,), k)
    n_smp = check_n_samples(n_samples) if mode else 1
    fewest_ran = int(ran_m.sum(axis=1).min()) if n else 0
    check_work(k, fewest_ran, options.max_depth, n_smp, max_work, options.prefixes_only)
    normals = standard_normals(k, n_smp, check_seed(seed)) if mode else np.zeros((0, k))
    threads = check_int(n_threads, "n_threads", 0, MAX_THREADS)
    nm, mask, util, qual, cst, evaluated = _backend.active().run_search_batch(
        q, c, lam_v, mode, sd, chol, normals, ran_m, options, pref, threads
    )
    return BatchSearchResult(
        np.asarray(nm, dtype=np.int64),
        np.asarray(mask).astype(bool),
        np.asarray(util, dtype=np.float64),
        np.asarray(qual, dtype=np.float64),
        np.asarray(cst, dtype=np.float64),
        np.asarray(evaluated, dtype=np.int64),
    )


__all__: Sequence[str] = [
    "DEFAULT_MAX_WORK",
    "MAX_MODELS",
    "BatchSearchResult",
    "SearchResult",
    "expected_max",
    "search_supermodel",
    "search_supermodel_batch",
    "search_work",
    "standard_normals",
]
