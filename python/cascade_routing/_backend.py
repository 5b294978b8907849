"""Choose the kernel backend: the C++ core (default), Numba, or the NumPy reference.

The environment variable ``CASCADE_ROUTING_BACKEND`` (``cpp``, ``numba`` or ``numpy``) forces
one at import time; :func:`set_backend` and :func:`use_backend` switch at run time. A missing
compiled extension or a missing ``numba`` falls back to the next backend with one warning.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .options import ReplayKind, SearchOptions, UncertaintyMode

BACKENDS = ("cpp", "numba", "numpy")
ENV_VAR = "CASCADE_ROUTING_BACKEND"


@dataclass(frozen=True)
class Backend:
    """The kernels of one backend (see ``_reference.py`` for their contracts).

    ``search``, ``search_batch`` and ``replay_two_phase`` are the raw kernels, which take
    positional arguments exactly as ``_reference.py`` defines them; the package calls them
    through :meth:`run_search`, :meth:`run_search_batch` and :meth:`run_replay`, which take
    one :class:`~cascade_routing.options.SearchOptions` instead of the individual flags.
    """

    name: str
    search: Callable[..., Any]
    search_batch: Callable[..., Any]
    replay_two_phase: Callable[..., Any]
    cholesky_psd: Callable[..., Any]

    def run_search(
        self,
        quality: NDArray[np.float64],
        cost: NDArray[np.float64],
        lam: float,
        mode: UncertaintyMode,
        sd: NDArray[np.float64],
        chol: NDArray[np.float64],
        normals: NDArray[np.float64],
        ran: NDArray[np.uint8],
        options: SearchOptions,
        prefer_expensive: bool,
    ) -> Any:
        """One search: ``(next_model, mask, utility, quality, cost, evaluated)``."""
        o = options
        return self.search(
            quality, cost, lam, int(mode), sd, chol, normals, ran, o.max_depth,
            o.force_order, o.prefixes_only, o.prune, prefer_expensive, o.digits,
            o.quality_lower, o.quality_upper,
        )  # fmt: skip

    def run_search_batch(
        self,
        quality: NDArray[np.float64],
        cost: NDArray[np.float64],
        lam: NDArray[np.float64],
        mode: UncertaintyMode,
        sd: NDArray[np.float64],
        chol: NDArray[np.float64],
        normals: NDArray[np.float64],
        ran: NDArray[np.uint8],
        options: SearchOptions,
        prefer_expensive: NDArray[np.uint8],
        n_threads: int = 1,
    ) -> Any:
        """A batch of searches: ``(next_model, mask, utility, quality, cost, evaluated)``."""
        o = options
        return self.search_batch(
            quality, cost, lam, int(mode), sd, chol, normals, ran, o.max_depth,
            o.force_order, o.prefixes_only, o.prune, prefer_expensive, o.digits,
            o.quality_lower, o.quality_upper, n_threads=n_threads,
        )  # fmt: skip

    def run_replay(
        self,
        tables: ReplayTables,
        lambdas: NDArray[np.float64],
        prefer_expensive: NDArray[np.uint8],
        normals: NDArray[np.float64],
        kind: ReplayKind,
        thresholds: NDArray[np.float64],
        options: SearchOptions,
        select_last: bool,
        n_threads: int = 1,
    ) -> Any:
        """A two-phase replay: ``(selected, n_run, order, cost, quality)``."""
        t, o = tables, options
        return self.replay_two_phase(
            t.ante_quality, t.post_quality, t.ante_sd, t.post_sd, t.ante_cost, t.post_cost,
            t.true_quality, t.true_cost, lambdas, prefer_expensive, normals, t.use_sd,
            int(kind), thresholds, o.max_depth, o.force_order, o.prefixes_only, o.prune,
            o.digits, select_last, o.quality_lower, o.quality_upper, n_threads=n_threads,
        )  # fmt: skip


@dataclass(frozen=True)
class ReplayTables:
    """The ``(n, k)`` tables of a two-phase replay, C-contiguous float64, in model order.

    ``ante_sd`` / ``post_sd`` are ``(n, 0)`` when ``use_sd`` is False (exact estimates).
    """

    ante_quality: NDArray[np.float64]
    post_quality: NDArray[np.float64]
    ante_sd: NDArray[np.float64]
    post_sd: NDArray[np.float64]
    ante_cost: NDArray[np.float64]
    post_cost: NDArray[np.float64]
    true_quality: NDArray[np.float64]
    true_cost: NDArray[np.float64]
    use_sd: bool


def _load(name: str) -> Backend:
    if name == "cpp":
        core = importlib.import_module("cascade_routing._core")
        return Backend(
            "cpp", core.search, core.search_batch, core.replay_two_phase, core.cholesky_psd
        )
    if name == "numba":
        nb = importlib.import_module("cascade_routing._numba")
        return Backend("numba", nb.search, nb.search_batch, nb.replay_two_phase, nb.cholesky_psd)
    if name == "numpy":
        from . import _reference as ref

        def search_batch(*args: Any, n_threads: int = 1) -> Any:
            return ref.search_batch_kernel(*args)  # type: ignore[no-untyped-call]

        def replay(*args: Any, n_threads: int = 1) -> Any:
            return ref.replay_two_phase_kernel(*args)  # type: ignore[no-untyped-call]

        return Backend("numpy", ref.search_kernel, search_batch, replay, ref.cholesky_psd)
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


_loaded: dict[str, Backend] = {}


def get(name: str) -> Backend:
    """The backend ``name``, imported on first use; raises ImportError if it is unavailable."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name not in _loaded:
        _loaded[name] = _load(name)
    return _loaded[name]


def available() -> tuple[str, ...]:
    """Names of the backends that import on this machine."""
    names = []
    for name in BACKENDS:
        try:
            get(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


def _initial() -> Backend:
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(
                f"{ENV_VAR}={forced!r} is not a backend; use one of {', '.join(BACKENDS)}"
            )
        return get(forced)
    errors = []
    for name in BACKENDS:
        try:
            chosen = get(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if errors:
            warnings.warn(
                f"cascade_routing: using the {name} backend ({'; '.join(errors)})",
                RuntimeWarning,
                stacklevel=3,
            )
        return chosen
    raise ImportError("no cascade_routing backend could be loaded: " + "; ".join(errors))


_active: Backend | None = None


def active() -> Backend:
    global _active
    if _active is None:
        _active = _initial()
    return _active


def backend() -> str:
    """Name of the active backend: ``"cpp"``, ``"numba"`` or ``"numpy"``."""
    return active().name


def set_backend(name: str) -> None:
    """Make ``name`` the active backend for the whole process."""
    global _active
    _active = get(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Temporarily switch the active backend (not thread-safe: for tests and benchmarks)."""
    global _active
    previous = active()
    _active = get(name)
    try:
        yield _active
    finally:
        _active = previous
