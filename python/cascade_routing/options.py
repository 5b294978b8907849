"""Typed options of the compiled search, mirroring ``SearchOptions`` in ``cpp/include``.

One :class:`SearchOptions` travels from a strategy or the engine to every backend, instead of
a dozen positional flags; :class:`UncertaintyMode` and :class:`ReplayKind` name the modes that
the kernels take as small integers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class UncertaintyMode(enum.IntEnum):
    """How the quality estimates of a decision are uncertain (``Mode`` in the C++ core)."""

    EXACT = 0  #: exact means: ``Q(M)`` is the largest mean
    INDEPENDENT = 1  #: independent estimates, given by their standard deviations
    COVARIANCE = 2  #: a full covariance, given by its lower Cholesky factor


class ReplayKind(enum.IntEnum):
    """What a two-phase replay runs (``Strategy`` in ``replay.hpp``)."""

    SUPERMODEL_SEARCH = 0  #: routing, the optimal cascade and cascade routing
    THRESHOLD_CASCADE = 1  #: run in order while the post-hoc estimate is below a threshold


@dataclass(frozen=True)
class SearchOptions:
    """Options shared by every query of a search or replay (already validated).

    Attributes
    ----------
    max_depth : int
        Largest supermodel size, run models included (at least 1; clipped to ``k`` by the
        kernels).
    force_order : bool
        New models must come after every run model in the model order.
    prefixes_only : bool
        Only prefixes ``m_0 .. m_j`` are candidates (the optimal cascade).
    prune : bool
        Drop children with a negative marginal gain (exact; see docs/algorithm.md §4).
    digits : int
        Round utilities to this many decimals before comparing; ``-1``: no rounding.
    quality_lower, quality_upper : float
        Clip every quality sample to this range (infinite: no bound).
    """

    max_depth: int
    force_order: bool = True
    prefixes_only: bool = False
    prune: bool = True
    digits: int = 8
    quality_lower: float = -math.inf
    quality_upper: float = math.inf

    @property
    def bounds(self) -> tuple[float, float]:
        """``(quality_lower, quality_upper)``."""
        return self.quality_lower, self.quality_upper


__all__ = ["ReplayKind", "SearchOptions", "UncertaintyMode"]
