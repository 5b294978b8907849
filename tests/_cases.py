"""Seeded random search instances shared by the search and thread tests.

An instance is a dict of keyword arguments for :func:`cascade_routing.search_supermodel`
(``quality``, ``cost``, ``lam`` and options). ``adversarial=True`` draws many ties: ``lam = 0``,
qualities and costs from a handful of values, zero costs, zero variances, duplicated models and
rank-deficient covariances.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import cascade_routing as cr

MODES = ("exact", "var", "cov")


def draw_values(
    rng: np.random.Generator,
    k: int,
    mode: str,
    *,
    adversarial: bool = False,
    well_conditioned: bool = False,
) -> dict[str, Any]:
    """quality, cost, lam and var/cov for ``k`` models.

    ``well_conditioned``: covariances are strictly positive definite (for an oracle that uses
    ``np.linalg.cholesky``) and there are no duplicated models under a covariance.
    """
    if adversarial:
        q = rng.choice([0.0, 0.25, 0.5, 0.5, 1.0], size=k)
        c = rng.choice([0.0, 0.0, 0.1, 0.5, 1.0], size=k)
        lam = float(rng.choice([0.0, 0.0, 0.5, 1.0, 1e-9]))
    else:
        scale = float(rng.choice([1.0, 1.0, 1.0, 0.01, 100.0]))
        q = rng.uniform(0.0, 1.0, size=k) * scale
        c = rng.uniform(0.0, 1.0, size=k)
        lam = float(rng.uniform(0.0, 1.0) * scale * rng.choice([0.1, 1.0, 5.0]))
    out: dict[str, Any] = {"quality": q, "cost": c, "lam": lam}
    qscale = max(1e-3, float(np.abs(q).max()))
    if mode == "var":
        var = rng.uniform(0.0, 0.05, size=k) * qscale**2
        if adversarial:
            var[rng.random(k) < 0.3] = 0.0
            if rng.random() < 0.2:
                var[:] = 0.0
        out["var"] = var
    elif mode == "cov":
        if well_conditioned:
            a = rng.normal(size=(k, k + 2)) * 0.15 * qscale
            cov = a @ a.T + 1e-3 * qscale**2 * np.eye(k)
        else:
            rank = int(rng.integers(1, k + 1)) if adversarial else k + 1
            a = rng.normal(size=(k, rank)) * 0.15 * qscale
            cov = a @ a.T
            if adversarial:
                zero = rng.random(k) < 0.2
                cov[zero, :] = 0.0
                cov[:, zero] = 0.0
        out["cov"] = (cov + cov.T) / 2.0
    elif mode != "exact":
        raise ValueError(mode)
    if adversarial and k >= 2 and not (well_conditioned and mode == "cov"):
        # Duplicate a few models exactly (same quality, cost and uncertainty).
        for _ in range(int(rng.integers(1, k))):
            i, j = (int(x) for x in rng.choice(k, size=2, replace=False))
            q[j], c[j] = q[i], c[i]
            if mode == "var":
                out["var"][j] = out["var"][i]
            elif mode == "cov":
                cov = out["cov"]
                cov[j, :] = cov[i, :]
                cov[:, j] = cov[:, i]
                cov[j, j] = cov[i, i]
    return out


def draw_bounds(
    rng: np.random.Generator, quality: np.ndarray, *, adversarial: bool = False
) -> tuple[float, float]:
    """Quality bounds ``(lower, upper)`` that clip some of the samples of ``quality`` (any
    shape: one pair for all its values).

    Mostly ``(0, scale)`` (probabilities), one-sided bounds, or a band inside the range of the
    means; ``adversarial`` adds bounds equal to quality values and bands so narrow that most
    samples collapse onto a bound (many exact ties).
    """
    q = np.asarray(quality, dtype=np.float64).ravel()
    scale = max(1e-3, float(np.abs(q).max())) if q.size else 1.0
    kind = int(rng.integers(0, 7 if adversarial else 4))
    if kind == 0:
        return 0.0, scale
    if kind == 1:
        return -math.inf, float(rng.uniform(0.3, 1.0)) * scale
    if kind == 2:
        return float(rng.uniform(0.0, 0.7)) * scale, math.inf
    if kind == 3:
        a, b = sorted(float(x) for x in rng.uniform(0.0, 1.0, size=2) * scale)
        return a, max(b, a + 0.05 * scale)
    if kind == 4:  # bounds at quality values
        a, b = float(q.min()), float(q.max())
        return (a, b) if a < b else (a, math.inf)
    if kind == 5:  # a band far narrower than the noise: nearly every sample sits on a bound
        a = float(rng.choice(q))
        return a, a + float(rng.choice([1e-12, 1e-6])) * scale
    return -math.inf, float(rng.choice(q))  # an upper bound at a quality value


def draw_ran(rng: np.random.Generator, k: int, prefixes_only: bool) -> tuple[int, ...]:
    """Models already run: nothing (often), a prefix, or any subset."""
    u = rng.random()
    n_ran = 0 if u < 0.4 else int(rng.integers(1, k + 1))
    if prefixes_only:
        return tuple(range(n_ran))
    return tuple(sorted(int(i) for i in rng.choice(k, size=n_ran, replace=False)))


def draw_max_depth(rng: np.random.Generator, k: int, n_ran: int) -> int | None:
    if rng.random() < 0.35:
        return None
    low = max(1, n_ran)
    # Sometimes larger than k (the engine clips it).
    return int(rng.integers(low, k + 2))


def random_instance(
    rng: np.random.Generator,
    mode: str,
    *,
    adversarial: bool = False,
    k_max: int = 8,
    well_conditioned: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for one ``search_supermodel`` call (``prune`` not included)."""
    k = int(rng.integers(1, k_max + 1))
    kw = draw_values(rng, k, mode, adversarial=adversarial, well_conditioned=well_conditioned)
    prefixes_only = bool(rng.random() < 0.2)
    ran = draw_ran(rng, k, prefixes_only)
    digits_choices: list[int | None] = [8, 8, None]
    if adversarial:
        digits_choices += [2, 0]
    kw.update(
        ran=ran,
        max_depth=draw_max_depth(rng, k, len(ran)),
        force_order=bool(rng.random() < 0.5),
        prefixes_only=prefixes_only,
        prefer=str(rng.choice(["cheapest", "expensive"])),
        rounding_digits=digits_choices[int(rng.integers(len(digits_choices)))],
        n_samples=int(rng.choice([32, 128, 128, 256])),
        seed=int(rng.integers(0, 4)),
    )
    return kw


def n_candidates(
    k: int,
    ran: tuple[int, ...],
    max_depth: int | None,
    force_order: bool,
    prefixes_only: bool,
) -> int:
    """Number of supermodels the unpruned search scores (docs/algorithm.md §4)."""
    n_ran = len(ran)
    depth = k if max_depth is None else min(max_depth, k)
    if prefixes_only:
        total = depth - n_ran + 1
    else:
        free = k - 1 - max(ran) if force_order and ran else k - n_ran
        total = sum(math.comb(free, i) for i in range(depth - n_ran + 1))
    return total - (0 if ran else 1)


def describe(kw: dict[str, Any]) -> str:
    """A reproducer for a failing instance (copy-pasteable keyword arguments)."""
    parts = []
    for key, value in kw.items():
        if isinstance(value, np.ndarray):
            value = np.array2string(
                value, floatmode="unique", separator=", ", max_line_width=10**6
            )
            value = f"np.array({value})"
        elif key == "quality_bounds" and value is not None:
            value = (
                "("
                + ", ".join(repr(float(v)) if math.isfinite(v) else f"float('{v}')" for v in value)
                + ")"
            )
        else:
            value = repr(value)
        parts.append(f"{key}={value}")
    return "cr.search_supermodel(" + ", ".join(parts) + ")"


def assert_same(
    a: cr.SearchResult,
    b: cr.SearchResult,
    kw: dict[str, Any],
    what: str,
    *,
    rtol: float = 1e-12,
    check_evaluated: bool = False,
) -> None:
    """Equal next model and supermodel; utility/quality/cost within ``rtol`` of the scale."""
    msg = f"{what}: {a} != {b}\nreproducer: {describe(kw)}"
    assert a.next_model == b.next_model, msg
    assert a.supermodel == b.supermodel, msg
    scale = 1.0 + abs(a.quality) + abs(a.cost) * (1.0 + float(kw.get("lam", 0.0)))
    for field in ("utility", "quality", "cost"):
        x, y = getattr(a, field), getattr(b, field)
        assert abs(x - y) <= rtol * scale, f"{field}: {msg}"
    if check_evaluated:
        assert a.evaluated == b.evaluated, f"evaluated: {msg}"
