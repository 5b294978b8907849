"""cascade-routing: optimal routing, cascading and cascade routing for LLMs.

Implements "A Unified Approach to Routing and Cascading for LLMs" (Dekoninck, Baader, Vechev,
ICML 2025) with a compiled C++ core; Numba and NumPy versions of the same kernels serve as
fallbacks and test oracles.
"""

from __future__ import annotations

from ._backend import available as available_backends
from ._backend import backend, set_backend, use_backend
from .engine import (
    MAX_MODELS,
    BatchSearchResult,
    SearchResult,
    expected_max,
    search_supermodel,
    search_supermodel_batch,
    standard_normals,
)

__version__ = "0.1.0"

__all__ = [
    "MAX_MODELS",
    "BatchSearchResult",
    "SearchResult",
    "__version__",
    "available_backends",
    "backend",
    "expected_max",
    "search_supermodel",
    "search_supermodel_batch",
    "set_backend",
    "standard_normals",
    "use_backend",
]
