"""The four strategies of docs/algorithm.md §3, fitted to a cost budget (§2, §9).

All four share one interface: ``fit`` on logged data, ``plan`` / ``next_model`` / ``select``
for one decision, ``run`` / ``arun`` for the whole loop against real models, ``replay`` to
evaluate on logged data, and ``save`` / ``load`` for a versioned JSON policy.

Where each part lives:

- :mod:`.base`: :class:`Strategy` (parameters, estimation, :class:`Plan`, selection);
- :mod:`.concrete`: :class:`Router`, :class:`Cascade`, :class:`CascadeRouter`,
  :class:`ThresholdCascade`;
- :mod:`.replay`: the :class:`Replayer` protocol, :class:`TableReplayer`,
  :class:`EstimatorReplayer`, :class:`ReplayResult` and :class:`ReplayMeans` (what fitting
  reads of a replay);
- :mod:`.fitting`: λ bisection, γ mixing and the per-step search, one function for every
  replayer (in memory, or on a Dask cluster through
  :func:`cascade_routing.distributed.fit_distributed`, which sits above this package);
- :mod:`.loop`: ``run`` / ``arun``, :class:`Step`, :class:`RunResult` and their errors;
- :mod:`.persistence`: ``to_dict``, ``save`` and :func:`load_policy`.
"""

from __future__ import annotations

from .base import Plan, Queries, Strategy, query_coin
from .concrete import Cascade, CascadeRouter, Router, ThresholdCascade
from .fitting import FIT_ABOVE_DEAREST, FIT_BELOW_CHEAPEST, FIT_OK
from .loop import AllModelsFailedError, EstimatorFailedError, RunResult, Step
from .persistence import (
    MAX_POLICY_BYTES,
    POLICY_FORMAT,
    SCHEMA_VERSION,
    STRATEGIES,
    load_policy,
)
from .replay import EstimatorReplayer, Replayer, ReplayMeans, ReplayResult, TableReplayer

__all__ = [
    "FIT_ABOVE_DEAREST",
    "FIT_BELOW_CHEAPEST",
    "FIT_OK",
    "MAX_POLICY_BYTES",
    "POLICY_FORMAT",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "AllModelsFailedError",
    "Cascade",
    "CascadeRouter",
    "EstimatorFailedError",
    "EstimatorReplayer",
    "Plan",
    "Queries",
    "ReplayMeans",
    "ReplayResult",
    "Replayer",
    "Router",
    "RunResult",
    "Step",
    "Strategy",
    "TableReplayer",
    "ThresholdCascade",
    "load_policy",
    "query_coin",
]
