"""The prepared decider: a fitted strategy's decisions with everything but the means held once.

A :class:`Decider` holds the policy (the per-step multipliers of the cheap and the expensive
policy, the search options), the Sobol normals and one factor per run-set: the lower Cholesky
factor of ``Σ_R`` (full covariance) or the standard deviations (independent), in the
strategy's model order. A decision then takes only the new means and costs, checks their
shape and finiteness, and runs the same search as :meth:`Strategy.plan` with the same inputs,
so its decisions are the same bits (docs/decider.md).

The run-set table comes from an estimator that follows the :class:`RunSetUncertainty`
protocol (its uncertainty depends on the run-set only, as :class:`DefaultUncertainty` and
:class:`~cascade_routing.learn.LearnedQuality`). It is computed at ``fit`` (every run-set the
strategy can reach, up to :data:`MAX_TABLE_BYTES`) and saved with the policy, so a loaded
strategy decides at once, with no pass over a training log.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _backend
from ..engine import DEFAULT_MAX_WORK, standard_normals
from ..options import SearchOptions, UncertaintyMode
from ..validation import MAX_MAGNITUDE, all_within, check_psd

#: The largest run-set table (raw bytes of its factors) computed at fit time and saved with a
#: policy. Run-sets beyond it (more models run than the largest size that fits) are computed
#: on first use, once, and kept: only a strategy over many models with a deep search meets it
#: (11 models, any depth, full covariance: 2,048 run-sets, 1.1 MB).
MAX_TABLE_BYTES = 16 << 20

_CASCADE_ORDER = (
    "a cascade runs models in order; answers must come from a prefix of the model order"
)


@runtime_checkable
class RunSetUncertainty(Protocol):
    """A quality estimator whose uncertainty depends on the run-set only (docs/decider.md §2).

    ``uncertainty(ran)`` takes a boolean mask ``(k,)`` in the estimator's column order (True:
    the model has run) and returns what ``predict`` gives every query with that run-set: the
    covariance ``(k, k)``, or the variances ``(k,)``. ``predict_mean(queries, answers)``, if
    the estimator has it, returns the means ``(n, k)`` of ``predict`` without the uncertainty.
    """

    def uncertainty(self, ran: NDArray[np.bool_]) -> NDArray[np.float64]: ...


def has_runset_uncertainty(estimator: Any) -> bool:
    """Whether ``estimator`` follows :class:`RunSetUncertainty`."""
    return callable(getattr(estimator, "uncertainty", None))


def predict_means(estimator: Any, queries: Any, answers: Any) -> Any:
    """The estimator's means: ``predict_mean`` if it has one, else ``predict`` (whose
    uncertainty the caller ignores)."""
    fn = getattr(estimator, "predict_mean", None)
    return fn(queries, answers) if callable(fn) else estimator.predict(queries, answers)


def mask_bits(mask: int, k: int) -> list[int]:
    """Indices of the bits set in ``mask`` (below ``k``)."""
    return [i for i in range(k) if (mask >> i) & 1]


def reachable_runsets(k: int, depth: int, prefixes_only: bool) -> list[int]:
    """Run-set masks a strategy can decide at, by size then value: prefixes of the model
    order for a cascade, every set of at most ``depth`` models otherwise."""
    if prefixes_only:
        return [(1 << j) - 1 for j in range(min(depth, k) + 1)]
    out: list[int] = []
    for size in range(min(depth, k) + 1):
        out.extend(sum(1 << i for i in c) for c in combinations(range(k), size))
    return out


def table_runsets(
    k: int, depth: int, prefixes_only: bool, mode: UncertaintyMode
) -> tuple[list[int], bool]:
    """The run-sets of the fit-time table: whole sizes, smallest first, while the factors fit
    in :data:`MAX_TABLE_BYTES`; and whether that is every reachable run-set."""
    per = 8 * (k * k if mode == UncertaintyMode.COVARIANCE else k)
    top = min(depth, k)
    total = 0
    for size in range(top + 1):  # the largest size whose levels all fit (counted, not listed)
        total += 1 if prefixes_only else math.comb(k, size)
        if total * per > MAX_TABLE_BYTES:
            return reachable_runsets(k, size - 1, prefixes_only) if size else [], False
    return reachable_runsets(k, top, prefixes_only), True


def runset_factor(
    estimator: Any, order: NDArray[np.int64], mask: int
) -> tuple[UncertaintyMode, NDArray[np.float64]]:
    """The factor of run-set ``mask`` (bits in the model order ``order``): the lower Cholesky
    factor of the estimator's covariance, or its standard deviations, permuted into the model
    order, with the checks :meth:`Strategy.plan` makes (ValueError if they fail)."""
    k = order.shape[0]
    ran = np.zeros(k, dtype=bool)
    ran[order[mask_bits(mask, k)]] = True
    u = np.asarray(estimator.uncertainty(ran))
    source = "quality estimator"
    if u.dtype.kind not in "biuf":
        raise TypeError(f"{source} returned an uncertainty of dtype {u.dtype}; expected floats")
    u = np.ascontiguousarray(u, dtype=np.float64)
    if u.shape == (k,):
        if not all_within(u, 0.0, MAX_MAGNITUDE):
            raise ValueError(f"{source} returned negative, NaN, infinite or huge variances")
        return UncertaintyMode.INDEPENDENT, np.ascontiguousarray(np.sqrt(u[order]))
    if u.shape != (k, k):
        raise ValueError(
            f"{source}.uncertainty returned shape {u.shape}; expected ({k},) or ({k}, {k})"
        )
    if not all_within(u, -MAX_MAGNITUDE, MAX_MAGNITUDE):
        raise ValueError(f"{source} returned NaN, infinite or huge covariances")
    check_psd(u[None], "covariance returned by the quality estimator")
    cov = np.ascontiguousarray(u[order][:, order])
    chol = _backend.active().cholesky_psd(cov)
    return UncertaintyMode.COVARIANCE, np.ascontiguousarray(chol, dtype=np.float64)


@dataclass(frozen=True)
class RunSetTable:
    """Factors per run-set, in the model order ``order`` (positions in the strategy's
    ``models``): ``runsets`` (ascending bit masks over the model order) and ``factors``
    ``(n, k, k)`` lower Cholesky factors or ``(n, k)`` standard deviations.

    ``complete``: every run-set the strategy can reach is in the table (otherwise the others
    are computed on first use). Run-sets whose covariance is not positive semi-definite are
    left out: deciding at them raises as :meth:`Strategy.plan` does.
    """

    mode: UncertaintyMode
    order: NDArray[np.int64]
    runsets: NDArray[np.uint64]
    factors: NDArray[np.float64]
    complete: bool

    @property
    def k(self) -> int:
        return int(self.order.shape[0])


def build_table(
    estimator: Any, order: NDArray[np.int64], depth: int, prefixes_only: bool
) -> RunSetTable:
    """The fit-time run-set table of an estimator that follows :class:`RunSetUncertainty`."""
    k = order.shape[0]
    mode, first = runset_factor(estimator, order, 0)
    masks, complete = table_runsets(k, depth, prefixes_only, mode)
    kept: list[int] = [0]
    factors = [first]
    for m in masks[1:]:
        try:
            m_mode, f = runset_factor(estimator, order, m)
        except ValueError:
            complete = False  # not PSD (or invalid): deciding there raises, as plan does
            continue
        if m_mode != mode:
            raise ValueError(
                "the quality estimator's uncertainty(ran) returned variances for some run-sets "
                "and covariances for others; return one kind"
            )
        kept.append(m)
        factors.append(f)
    runsets = np.array(kept, dtype=np.uint64)
    stacked = np.ascontiguousarray(np.stack(factors), dtype=np.float64)
    idx = np.argsort(runsets, kind="stable")
    return RunSetTable(
        mode, order.copy(), runsets[idx], np.ascontiguousarray(stacked[idx]), complete
    )


class Decider:
    """Prepared decisions of a fitted search strategy (see the module docstring).

    Build it with :meth:`Strategy.decider`. Masks name models by their position in the
    strategy's ``model_order`` (bit ``i`` = ``model_order[i]`` has run), as do the means and
    costs. Decisions are thread-safe.

    Parameters
    ----------
    k : int
        Number of models.
    mode : UncertaintyMode
        Exact means, or the kind of the table's factors.
    lambdas, lambdas_expensive : ndarray
        Per-step multipliers of the cheap and the expensive policy.
    options : SearchOptions
        The strategy's search options.
    n_samples, sample_seed : int
        Sobol normals (unused for exact means).
    table : RunSetTable, optional
        Factors per run-set (required unless ``mode`` is exact).
    source : callable, optional
        ``source(mask) -> (mode, factor)`` for run-sets not in the table (computed once each).
    max_work : int
        Cap on one decision's worst-case work, as the strategy's ``max_work``; the compiled
        core refuses a configuration above it (``ValueError``).
    """

    def __init__(
        self,
        k: int,
        mode: UncertaintyMode,
        lambdas: NDArray[np.float64],
        lambdas_expensive: NDArray[np.float64],
        options: SearchOptions,
        *,
        n_samples: int = 128,
        sample_seed: int = 0,
        table: RunSetTable | None = None,
        source: Callable[[int], tuple[UncertaintyMode, NDArray[np.float64]]] | None = None,
        max_work: int = DEFAULT_MAX_WORK,
    ) -> None:
        self.k = int(k)
        self.mode = UncertaintyMode(mode)
        self.lambdas = np.ascontiguousarray(lambdas, dtype=np.float64)
        self.lambdas_expensive = np.ascontiguousarray(lambdas_expensive, dtype=np.float64)
        self.options = options
        self.n_samples = n_samples
        self.sample_seed = sample_seed
        self.max_work = max_work
        if self.mode != UncertaintyMode.EXACT and table is None:
            raise ValueError("a decider with uncertain estimates needs a run-set table")
        self.table = table
        self._source = source
        self._lock = threading.Lock()
        self._extra: dict[int, NDArray[np.float64]] = {}
        self.normals = (
            standard_normals(k, n_samples, sample_seed)
            if self.mode
            else np.zeros((0, k), dtype=np.float64)
        )
        self._factors: dict[int, NDArray[np.float64]] = {}
        if table is not None:
            self._factors = {int(m): f for m, f in zip(table.runsets.tolist(), table.factors)}
        self._core = self._build_core()

    def _build_core(self) -> Any:
        try:
            _backend.get("cpp")
        except ImportError:
            return None  # no compiled core: every backend decides through run_search
        from .._core import Decider as CoreDecider

        o = self.options
        if self.table is None:
            runsets = np.zeros(0, dtype=np.uint64)
            factors = np.zeros((0, self.k), dtype=np.float64)
        else:
            runsets, factors = self.table.runsets, self.table.factors
        return CoreDecider(
            self.k, int(self.mode), self.normals, self.lambdas, self.lambdas_expensive,
            o.max_depth, o.force_order, o.prefixes_only, o.digits, o.quality_lower,
            o.quality_upper, runsets, factors, max_work=float(self.max_work),
        )  # fmt: skip

    # ------------------------------------------------------------------ factors

    def has_runset(self, mask: int) -> bool:
        """Whether run-set ``mask`` is decided without computing anything."""
        return self.mode == UncertaintyMode.EXACT or mask in self._factors or mask in self._extra

    def _in_core(self, mask: int) -> bool:
        return self.mode == UncertaintyMode.EXACT or mask in self._factors

    def factor(self, mask: int) -> NDArray[np.float64]:
        """The factor of run-set ``mask``, computed with the estimator (once) if the table
        does not have it; ValueError if the estimator's uncertainty there is invalid."""
        return self._factor(mask)

    def _factor(self, mask: int) -> NDArray[np.float64]:
        f = self._factors.get(mask)
        if f is None:
            f = self._extra.get(mask)
        if f is not None:
            return f
        if self._source is None:
            raise KeyError(
                f"the decider has no factor for run-set {mask:#x} and no estimator to compute it"
            )
        mode, f = self._source(mask)
        if mode != self.mode:
            raise ValueError(
                f"the quality estimator's uncertainty for run-set {mask:#x} is of another kind "
                f"({mode.name}) than the table's ({self.mode.name})"
            )
        with self._lock:
            self._extra.setdefault(mask, f)
        return f

    # ------------------------------------------------------------------ decisions

    def _check(self, quality: ArrayLike, cost: ArrayLike, mask: Any) -> tuple[Any, Any, int]:
        q = np.ascontiguousarray(quality, dtype=np.float64)
        c = np.ascontiguousarray(cost, dtype=np.float64)
        if q.shape != (self.k,) or c.shape != (self.k,):
            raise ValueError(
                f"quality and cost must have shape ({self.k},), got {q.shape} and {c.shape}"
            )
        if isinstance(mask, (bool, np.bool_)) or not isinstance(mask, (int, np.integer)):
            raise TypeError(f"ran must be an int bit mask, got {type(mask).__name__}")
        m = int(mask)
        if m < 0 or m >> self.k:
            raise ValueError(f"ran must be a bit mask of the {self.k} models, got {m:#x}")
        if self.options.prefixes_only and m & (m + 1):
            raise ValueError(_CASCADE_ORDER)
        return q, c, m

    def decide(
        self, quality: ArrayLike, cost: ArrayLike, ran: int, expensive: bool = False
    ) -> tuple[int, int, float]:
        """One decision: ``(next_model, members, utility)``.

        ``quality`` and ``cost`` are ``(k,)`` in the model order, ``ran`` the bit mask of the
        run models, ``expensive`` whether the query's γ coin picked the expensive policy.
        ``next_model`` is a position in the model order (-1: stop), ``members`` the bit mask
        of the best supermodel.
        """
        be = _backend.active()
        core = self._core
        if (
            core is not None
            and be.name == "cpp"
            and type(ran) is int
            and (self.mode == UncertaintyMode.EXACT or ran in self._factors)
            and not (self.options.prefixes_only and ran & (ran + 1))
        ):
            # The fast path: the core checks the arrays (float64, C-contiguous, shape, finite)
            # and the mask itself; anything it refuses goes through the full checks below,
            # which convert array-likes or raise the error naming the argument.
            try:
                result: tuple[int, int, float] = core.decide(quality, cost, ran, bool(expensive))
                return result
            except (TypeError, ValueError):
                pass
        q, c, m = self._check(quality, cost, ran)
        if core is not None and be.name == "cpp" and self._in_core(m):
            nm, members, util = core.decide(q, c, m, bool(expensive))
            return int(nm), int(members), float(util)
        return self._decide_with(be, q, c, m, bool(expensive))

    def _decide_with(
        self, be: _backend.Backend, q: Any, c: Any, m: int, expensive: bool
    ) -> tuple[int, int, float]:
        # The compiled decider's checks (docs/decider.md §1), on every backend.
        if not (
            all_within(q, -MAX_MAGNITUDE, MAX_MAGNITUDE) and all_within(c, 0.0, MAX_MAGNITUDE)
        ):
            raise ValueError(
                "the decision input (quality, cost, ran) holds NaN or infinite values, values "
                "beyond 1e100 in magnitude or a negative cost; pass finite numbers within "
                "+-1e100 and costs >= 0"
            )
        k = self.k
        j = m.bit_count()
        lams = self.lambdas_expensive if expensive else self.lambdas
        lam = float(lams[min(j, lams.shape[0] - 1)])
        sd, chol = np.zeros(0), np.zeros((0, 0))
        if self.mode == UncertaintyMode.INDEPENDENT:
            sd = self._factor(m)
        elif self.mode == UncertaintyMode.COVARIANCE:
            chol = self._factor(m)
        ran = np.array([(m >> i) & 1 for i in range(k)], dtype=np.uint8)
        options = self.options
        depth = max(min(options.max_depth, k), j)
        if depth != options.max_depth:
            options = dataclasses.replace(options, max_depth=depth)
        nm, mask, util, _, _, _ = be.run_search(
            q, c, lam, self.mode, sd, chol, self.normals, ran, options, expensive
        )
        members = sum(1 << int(i) for i in np.asarray(mask).nonzero()[0])
        return int(nm), members, float(util)

    def decide_batch(
        self,
        quality: ArrayLike,
        cost: ArrayLike,
        ran: ArrayLike,
        expensive: ArrayLike | None = None,
        *,
        n_threads: int = 1,
    ) -> tuple[NDArray[np.int64], NDArray[np.uint64], NDArray[np.float64]]:
        """:meth:`decide` for ``n`` rows: quality, cost ``(n, k)``, ran ``(n,)`` masks,
        expensive ``(n,)`` (default: all cheap). Returns ``(next_model, members, utility)``."""
        q = np.ascontiguousarray(quality, dtype=np.float64)
        c = np.ascontiguousarray(cost, dtype=np.float64)
        r = _masks(ran)
        n = r.shape[0] if r.ndim == 1 else -1
        if q.shape != (n, self.k) or c.shape != (n, self.k) or r.ndim != 1:
            raise ValueError(
                f"quality and cost must have shape (n, {self.k}) and ran (n,), got "
                f"{q.shape}, {c.shape} and {r.shape}"
            )
        e = np.zeros(n, dtype=np.uint8) if expensive is None else _coins(expensive)
        if e.shape != (n,):
            raise ValueError(f"expensive must have shape ({n},), got {e.shape}")
        be = _backend.active()
        if (
            be.name == "cpp"
            and self._core is not None
            and all(self._in_core(int(m)) for m in np.unique(r).tolist())
        ):
            nm, mem, util = self._core.decide_batch(q, c, r, e, n_threads=n_threads)
            return nm, mem, util
        nm = np.empty(n, dtype=np.int64)
        mem = np.empty(n, dtype=np.uint64)
        util = np.empty(n, dtype=np.float64)
        for i in range(n):
            qi, ci, m = self._check(q[i], c[i], int(r[i]))
            nm[i], mi, util[i] = self._decide_with(be, qi, ci, m, bool(e[i]))
            mem[i] = mi
        return nm, mem, util

    # ------------------------------------------------------------------ the C ABI file

    def save_c(self, path: str | Path) -> None:
        """Write the decider for the C ABI's ``cr_decider_load`` (docs/decider.md §6).

        The file holds the policy, the normals and every factor the decider has (the table
        and any computed since): little-endian, a 96-byte header, the arrays, a CRC-32.
        """
        runsets, factors = self._all_factors()
        o = self.options
        flags = int(o.force_order) | (int(o.prefixes_only) << 1) | (int(o.prune) << 2)
        ns = self.normals.shape[0] if self.mode else 0
        payload = b"".join(
            [
                self.lambdas.astype("<f8").tobytes(),
                self.lambdas_expensive.astype("<f8").tobytes(),
                self.normals.astype("<f8").tobytes() if self.mode else b"",
                runsets.astype("<u8").tobytes(),
                factors.astype("<f8").tobytes(),
            ]
        )
        header = struct.pack(
            "<8sIIiiQQqIiddQQII",
            b"CRDECIDE", 1, 96, self.k, int(self.mode), ns, self.lambdas.shape[0],
            o.max_depth, flags, o.digits, o.quality_lower, o.quality_upper,
            runsets.shape[0], len(payload), 0, 0,
        )  # fmt: skip
        assert len(header) == 96
        body = header + payload
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(body + struct.pack("<I", zlib.crc32(body)))
        tmp.replace(target)

    def _all_factors(self) -> tuple[NDArray[np.uint64], NDArray[np.float64]]:
        if self.mode == UncertaintyMode.EXACT:
            return np.zeros(0, dtype=np.uint64), np.zeros(0)
        with self._lock:
            items = sorted({**self._factors, **self._extra}.items())
        runsets = np.array([m for m, _ in items], dtype=np.uint64)
        factors = np.stack([f for _, f in items]) if items else np.zeros(0)
        return runsets, factors


def _masks(ran: ArrayLike) -> NDArray[np.uint64]:
    """``ran`` of :meth:`Decider.decide_batch` as uint64 masks: integers in [0, 2**64) only
    (a float or a negative mask would be truncated or wrapped into another run-set)."""
    a = np.asarray(ran)
    if a.size == 0:
        return np.zeros(a.shape, dtype=np.uint64)
    if a.dtype.kind == "O" or (a.dtype.kind == "i" and a.min() < 0):
        raise ValueError("ran must hold bit masks between 0 and 2**64 - 1 (bit i = model i ran)")
    if a.dtype.kind not in "iu":
        raise TypeError(
            f"ran must hold integer bit masks, got dtype {a.dtype}; pass "
            "np.asarray(ran, dtype=np.uint64)"
        )
    return np.ascontiguousarray(a, dtype=np.uint64)


def _coins(expensive: ArrayLike) -> NDArray[np.uint8]:
    """``expensive`` of :meth:`Decider.decide_batch` as 0 / 1 (booleans or integers)."""
    a = np.asarray(expensive)
    if a.size and a.dtype.kind not in "biu":
        raise TypeError(f"expensive must hold booleans (or 0 / 1), got dtype {a.dtype}")
    return np.ascontiguousarray(a != 0, dtype=np.uint8)


def runsets_of(masks: Iterable[int]) -> NDArray[np.uint64]:
    """Masks as the ``uint64`` array :meth:`Decider.decide_batch` takes."""
    return np.fromiter((int(m) for m in masks), dtype=np.uint64)


def mask_of(ran: Iterable[bool]) -> int:
    """The bit mask of a boolean run-set (bit ``i`` = entry ``i`` is True)."""
    return sum(1 << i for i, r in enumerate(ran) if r)


__all__ = [
    "MAX_TABLE_BYTES",
    "Decider",
    "RunSetTable",
    "RunSetUncertainty",
    "build_table",
    "has_runset_uncertainty",
    "mask_of",
    "predict_means",
    "reachable_runsets",
    "runset_factor",
    "table_runsets",
]
