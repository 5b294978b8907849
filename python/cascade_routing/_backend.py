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
from dataclasses import dataclass
from typing import Any, Callable, Iterator

BACKENDS = ("cpp", "numba", "numpy")
ENV_VAR = "CASCADE_ROUTING_BACKEND"


@dataclass(frozen=True)
class Backend:
    """The kernels of one backend (see ``_reference.py`` for their contracts)."""

    name: str
    search: Callable[..., Any]
    search_batch: Callable[..., Any]
    replay_two_phase: Callable[..., Any]
    cholesky_psd: Callable[..., Any]


def _load(name: str) -> Backend:
    if name == "cpp":
        core = importlib.import_module("cascade_routing._core")
        return Backend(
            "cpp", core.search, core.search_batch, core.replay_two_phase, core.cholesky_psd
        )
    if name == "numba":
        nb = importlib.import_module("cascade_routing._numba")
        return Backend(
            "numba", nb.search, nb.search_batch, nb.replay_two_phase, nb.cholesky_psd
        )
    if name == "numpy":
        from . import _reference as ref

        def search_batch(*args: Any, n_threads: int = 1) -> Any:
            return ref.search_batch_kernel(*args)

        def replay(*args: Any, n_threads: int = 1) -> Any:
            return ref.replay_two_phase_kernel(*args)

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
