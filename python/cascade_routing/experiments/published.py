"""Published AUC tables: the paper's and the reference code's (docs/algorithm.md §14).

All values are AUC ×100. Columns ``"3L"`` … ``"11H"`` are the pool size (3, 5 or 11 models)
and the noise level (low, medium, high) of the RouterBench experiment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["COLUMNS", "PAPER_AUC", "PAPER_SWEBENCH_AUC", "REFERENCE_SUBSET_AUC"]

_METHODS = ("linear", "routing", "threshold cascade", "optimal cascade", "cascade routing")

#: The columns of the RouterBench grid, in the order the paper prints them.
COLUMNS: tuple[str, ...] = ("3L", "3M", "3H", "5L", "5M", "5H", "11L", "11M", "11H")


def _table_of(
    columns: Sequence[str], rows: Mapping[str, Sequence[float]]
) -> dict[str, dict[str, float]]:
    return {m: dict(zip(columns, map(float, rows[m]))) for m in _METHODS}


#: The paper's published RouterBench (0-shot) AUC ×100:
#: ``PAPER_AUC[method]["3L"]`` = 3-model pool, low noise (L/M/H = low/medium/high).
PAPER_AUC: dict[str, dict[str, float]] = _table_of(
    COLUMNS,
    {
        "linear": (69.62, 69.62, 69.62, 69.22, 69.22, 69.22, 70.51, 70.51, 70.51),
        "routing": (79.73, 74.97, 71.81, 81.24, 74.43, 71.33, 83.25, 74.63, 72.67),
        "threshold cascade": (80.86, 74.64, 72.48, 82.33, 73.03, 69.53, 84.48, 73.64, 69.79),
        "optimal cascade": (81.09, 76.16, 72.67, 83.06, 75.17, 70.18, 84.47, 75.10, 70.26),
        "cascade routing": (82.36, 76.55, 73.22, 84.33, 76.31, 72.75, 87.24, 77.57, 74.40),
    },
)

#: The reference implementation run on the bundled RouterBench subset with the exact protocol
#: of :mod:`cascade_routing.experiments.simulation` and constant λ (AUC ×100, 10 budgets per
#: hull segment).
REFERENCE_SUBSET_AUC: dict[str, dict[str, float]] = _table_of(
    ("3L", "3M", "3H", "5L", "5M", "5H"),
    {
        "linear": (80.86, 80.86, 80.86, 80.46, 80.46, 80.46),
        "routing": (89.20, 84.89, 83.41, 91.02, 84.60, 82.97),
        "threshold cascade": (89.24, 85.94, 84.14, 90.55, 84.98, 81.95),
        "optimal cascade": (91.58, 86.60, 84.32, 94.00, 86.72, 83.50),
        "cascade routing": (91.59, 87.26, 85.16, 94.43, 87.90, 85.21),
    },
)

#: The paper's SWE-Bench AUC ×100 (10 agents).
PAPER_SWEBENCH_AUC: dict[str, float] = {
    "routing": 40.49,
    "threshold cascade": 38.52,
    "optimal cascade": 53.21,
    "cascade routing": 54.12,
}
