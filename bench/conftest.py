"""Shared pieces of the benchmark suites: the ratio summary printed at the end of a run.

pytest-benchmark already prints each group with the fastest entry as the unit; the summary
printed at the end adds the ratios the project tracks explicitly: how much faster the C++
core is than the NumPy reference and than Numba, measured in the same run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

#: group -> backend label -> median seconds per call
_MEDIANS: dict[str, dict[str, float]] = defaultdict(dict)


@pytest.fixture
def ratio_log() -> Any:
    """``ratio_log(benchmark, group, label)`` remembers a finished benchmark's median for the
    summary of ratios at the end of the run (nothing is recorded with --benchmark-disable)."""

    def record(benchmark: Any, group: str, label: str) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is None:
            return
        _MEDIANS[group][label] = float(stats.stats.median)

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _MEDIANS:
        return
    tr = terminalreporter
    tr.section("cascade-routing: C++ core against baselines of the same run (median ratios)")
    tr.write_line(
        f"{'group':<28} {'cpp median':>14} {'numpy/cpp':>10} {'numba/cpp':>10} {'cpp/cpp-2t':>11}"
    )
    for group in sorted(_MEDIANS):
        m = _MEDIANS[group]
        if "cpp" not in m:
            continue
        cpp = m["cpp"]
        ratios = [f"{m[b] / cpp:10.1f}" if b in m else f"{'-':>10}" for b in ("numpy", "numba")]
        threads = f"{cpp / m['cpp-2t']:11.2f}" if "cpp-2t" in m else f"{'-':>11}"
        tr.write_line(f"{group:<28} {cpp * 1e6:12.1f}us {' '.join(ratios)} {threads}")
