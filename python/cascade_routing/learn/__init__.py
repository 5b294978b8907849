"""Estimators learned from a service's own logs (docs/estimators.md).

* :class:`ModelAnswer` — a structured answer (text, parsed answer, confidence, token
  log-probabilities, tokens, cost), with :meth:`ModelAnswer.from_openai`;
* :class:`LearnedQuality` — run-set-aware, calibrated quality estimates with a full covariance;
* :class:`PriceTableCost` — ex-ante cost from a price table, post hoc the observed cost;
* :func:`save_estimator` / :func:`load_estimator` — a safe, versioned format (JSON + ``.npz``,
  never a pickle).

Needs scikit-learn (the ``learn`` extra).
"""

from __future__ import annotations

from ..answers import ModelAnswer
from .cost import PriceTableCost
from .persist import load_estimator, save_estimator
from .quality import (
    CrossFittedQuality,
    LearnedQuality,
    brier_score,
    expected_calibration_error,
)

__all__ = [
    "CrossFittedQuality",
    "LearnedQuality",
    "ModelAnswer",
    "PriceTableCost",
    "brier_score",
    "expected_calibration_error",
    "load_estimator",
    "save_estimator",
]
