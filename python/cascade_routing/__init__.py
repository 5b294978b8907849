"""cascade-routing: optimal routing, cascading and cascade routing for LLMs.

Implements "A Unified Approach to Routing and Cascading for LLMs" (Dekoninck, Baader, Vechev,
ICML 2025) with a compiled C++ core; Numba and NumPy versions of the same kernels serve as
fallbacks and test oracles.
"""

from __future__ import annotations

from ._backend import available as available_backends
from ._backend import backend, set_backend, use_backend
from ._version import __version__
from .answers import ModelAnswer
from .engine import (
    DEFAULT_MAX_WORK,
    MAX_MODELS,
    BatchSearchResult,
    SearchResult,
    expected_max,
    search_supermodel,
    search_supermodel_batch,
    search_work,
    standard_normals,
)
from .estimators import (
    ConstantCost,
    DefaultUncertainty,
    QualityEstimate,
    TableCost,
    TwoPhaseCost,
    TwoPhaseQuality,
)
from .options import SearchOptions, UncertaintyMode
from .strategies import (
    AllModelsFailedError,
    Cascade,
    CascadeRouter,
    EstimatorFailedError,
    Plan,
    ReplayResult,
    Router,
    RunResult,
    Step,
    Strategy,
    ThresholdCascade,
    load_policy,
)
from .validation import UnknownModelError

__all__ = [
    "DEFAULT_MAX_WORK",
    "MAX_MODELS",
    "ModelAnswer",
    "AllModelsFailedError",
    "BatchSearchResult",
    "Cascade",
    "CascadeRouter",
    "ConstantCost",
    "DefaultUncertainty",
    "EstimatorFailedError",
    "Plan",
    "QualityEstimate",
    "ReplayResult",
    "Router",
    "RunResult",
    "SearchOptions",
    "SearchResult",
    "Step",
    "Strategy",
    "TableCost",
    "ThresholdCascade",
    "TwoPhaseCost",
    "TwoPhaseQuality",
    "UncertaintyMode",
    "UnknownModelError",
    "load_policy",
    "__version__",
    "available_backends",
    "backend",
    "expected_max",
    "search_supermodel",
    "search_supermodel_batch",
    "search_work",
    "set_backend",
    "standard_normals",
    "use_backend",
]
