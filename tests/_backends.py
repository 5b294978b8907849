"""Activating a backend, or importing an optional module, in a test: skipped when it cannot be
imported, a failure instead in CI."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

import cascade_routing as cr

BACKENDS = ("cpp", "numba", "numpy")
#: Backends compared against the NumPy reference (comparing numpy with itself cannot fail).
FAST_BACKENDS = ("cpp", "numba")
REQUIRE_ALL = "CASCADE_ROUTING_REQUIRE_ALL_BACKENDS"


def require_backend(name: str) -> None:
    """Skip (or, when all backends are required, fail) if backend ``name`` does not import."""
    try:
        cr._backend.get(name)
    except ImportError as exc:
        reason = f"backend {name!r} is not available: {exc}"
        if os.environ.get(REQUIRE_ALL) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ALL}=1)", pytrace=False)
        hint = "build the C++ extension" if name == "cpp" else "pip install numba"
        pytest.skip(f"{reason}; {hint}")


def require_module(name: str, extra: str) -> ModuleType:
    """Import optional module ``name`` (from the ``[extra]`` extra), or skip the test; when all
    parts are required (CI), a missing module fails instead of skipping."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        reason = f"{name} is not installed ({exc}); pip install 'cascade-routing[{extra}]'"
        if os.environ.get(REQUIRE_ALL) == "1":
            pytest.fail(f"{reason} ({REQUIRE_ALL}=1)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def activate_backend(name: str) -> Iterator[str]:
    """Generator for fixtures: make ``name`` the active backend for one test."""
    require_backend(name)
    with cr.use_backend(name):
        assert cr.backend() == name
        yield name
