"""``expected_max`` (QMC) against closed forms (docs/algorithm.md §5).

The tolerances are the ones the ``expected_max`` docstring promises: error below
``0.06 * max(sd)`` with 128 Sobol samples and below ``0.006 * max(sd)`` with 4096
(up to 11 models; measured worst cases 0.047 and 0.004, for many identical models).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import cascade_routing as cr

#: n_samples -> documented bound on |error| / max(sd)
CLAIM = {128: 0.06, 4096: 0.006}


def clark(mu1: float, mu2: float, s1: float, s2: float, rho: float) -> float:
    """E[max(Z1, Z2)] for a bivariate normal (Clark 1961)."""
    theta2 = s1 * s1 + s2 * s2 - 2.0 * rho * s1 * s2
    if theta2 <= 1e-300:
        return max(mu1, mu2)
    theta = math.sqrt(theta2)
    alpha = (mu1 - mu2) / theta
    return (
        mu1 * stats.norm.cdf(alpha) + mu2 * stats.norm.cdf(-alpha) + theta * stats.norm.pdf(alpha)
    )


@functools.cache
def independent_max(mu: tuple[float, ...], sd: tuple[float, ...]) -> float:
    """E[max_i Z_i], Z_i ~ N(mu_i, sd_i^2) independent: ∫ x d/dx Π Φ((x-μ_i)/σ_i) dx."""
    m, s = np.array(mu), np.array(sd)

    def integrand(x: float) -> float:
        z = (x - m) / s
        log_cdf = special.log_ndtr(z)
        log_pdf = -0.5 * z * z - np.log(math.sqrt(2.0 * math.pi) * s)
        # d/dx Π_i Φ(z_i) = Σ_i φ(z_i)/σ_i Π_{j≠i} Φ(z_j), in logs to survive far tails
        return float(x * np.exp(log_cdf.sum()) * np.exp(log_pdf - log_cdf).sum())

    lo, hi = float((m - 12 * s).min()), float((m + 12 * s).max())
    value, err = integrate.quad(
        integrand,
        lo,
        hi,
        points=sorted(set(m.tolist())),
        limit=500,
        epsabs=1e-12,
        epsrel=1e-12,
    )
    assert err < 1e-8
    return value


def _random_family(rng: np.random.Generator, k: int, family: int) -> tuple[np.ndarray, np.ndarray]:
    """Three kinds of cases: spread-out means, identical models (the hardest), close means."""
    if family == 0:
        return rng.normal(size=k), rng.uniform(0.01, 1.0, size=k)
    if family == 1:
        return np.full(k, rng.normal()), np.full(k, rng.uniform(0.1, 2.0))
    return rng.normal(size=k) * 0.1, rng.uniform(0.5, 1.0, size=k)


# --------------------------------------------------------------------------- exact cases


def test_no_uncertainty_is_max_of_means() -> None:
    rng = np.random.default_rng(1)
    for k in (1, 2, 5, 64):
        mean = rng.normal(size=k)
        assert cr.expected_max(mean) == mean.max()
    assert cr.expected_max([3, 1, 2]) == 3.0
    assert cr.expected_max([True, False]) == 1.0
    assert isinstance(cr.expected_max([0.5]), float)


def test_zero_variance_is_max_of_means(backend: str) -> None:
    rng = np.random.default_rng(2)
    for k in (1, 3, 8):
        mean = rng.normal(size=k)
        for kw in ({"var": np.zeros(k)}, {"cov": np.zeros((k, k))}):
            for n in (1, 128, 4096):
                got = cr.expected_max(mean, n_samples=n, **kw)
                assert got == pytest.approx(mean.max(), rel=1e-13, abs=1e-13), (kw, n)


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("n_samples", sorted(CLAIM))
def test_one_model_is_its_mean(n_samples: int) -> None:
    rng = np.random.default_rng(3)
    worst = 0.0
    for seed in range(40):
        mu, sd = float(rng.normal()), float(rng.uniform(0.01, 3.0))
        got = cr.expected_max([mu], var=[sd * sd], n_samples=n_samples, seed=seed)
        got_cov = cr.expected_max([mu], cov=[[sd * sd]], n_samples=n_samples, seed=seed)
        assert got == pytest.approx(got_cov, rel=1e-14, abs=1e-14)
        worst = max(worst, abs(got - mu) / sd)
    assert worst < CLAIM[n_samples], f"worst error {worst:.4f} * sd"


@pytest.mark.parametrize("n_samples", sorted(CLAIM))
def test_two_correlated_models_clark(backend: str, n_samples: int) -> None:
    rng = np.random.default_rng(4)
    worst, worst_case = 0.0, None
    for trial in range(150):
        mu1, mu2 = rng.normal(size=2) * rng.choice([0.1, 1.0])
        s1, s2 = rng.uniform(0.05, 2.0, size=2)
        rho = float(rng.choice([rng.uniform(-1, 1), 0.0, 0.99, -0.99]))
        cov = [[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]]
        got = cr.expected_max([mu1, mu2], cov=cov, n_samples=n_samples, seed=trial % 7)
        err = abs(got - clark(mu1, mu2, s1, s2, rho)) / max(s1, s2)
        if err > worst:
            worst, worst_case = err, (mu1, mu2, s1, s2, rho, trial % 7)
        if rho == 0.0:
            got_var = cr.expected_max(
                [mu1, mu2], var=[s1 * s1, s2 * s2], n_samples=n_samples, seed=trial % 7
            )
            assert got_var == pytest.approx(got, rel=1e-13, abs=1e-13)
    assert worst < CLAIM[n_samples], (
        f"worst error {worst:.4f} * max(sd) > {CLAIM[n_samples]} at (mu1, mu2, s1, s2, rho, "
        f"seed) = {worst_case}"
    )


@pytest.mark.parametrize("n_samples", sorted(CLAIM))
def test_independent_models_integral(n_samples: int) -> None:
    """The docstring's accuracy claim over random pools of 3 to 11 models (the paper's pool
    sizes), against a 1-D numerical integral."""
    rng = np.random.default_rng(5)
    worst: dict[int, tuple[float, tuple]] = {}
    for trial in range(270):
        k = 3 + trial % 9
        mu, sd = _random_family(rng, k, trial // 9 % 3)
        seed = int(rng.integers(0, 100))
        want = independent_max(tuple(mu.tolist()), tuple(sd.tolist()))
        got = cr.expected_max(mu, var=sd**2, n_samples=n_samples, seed=seed)
        err = abs(got - want) / sd.max()
        if err > worst.get(k, (0.0,))[0]:
            worst[k] = (err, (mu.tolist(), sd.tolist(), seed))
    summary = ", ".join(f"k={k}: {worst[k][0]:.4f}" for k in sorted(worst))
    bad = {k: w for k, w in worst.items() if w[0] >= CLAIM[n_samples]}
    assert not bad, (
        f"expected_max error above the documented {CLAIM[n_samples]} * max(sd) at n_samples="
        f"{n_samples}; worst |error| / max(sd) per k: {summary}; worst case (mean, sd, seed): "
        f"{max(bad.values())[1]}"
    )


def test_integral_oracle_sanity() -> None:
    # The oracle itself: two independent models agree with Clark (rho = 0); identical
    # standard normals: E[max of 3] = 3 / (2 sqrt(pi)).
    assert independent_max((0.3, -0.2), (0.5, 1.5)) == pytest.approx(
        clark(0.3, -0.2, 0.5, 1.5, 0.0), abs=1e-10
    )
    assert independent_max((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)) == pytest.approx(
        3 / (2 * math.sqrt(math.pi)), abs=1e-10
    )


# --------------------------------------------------------------------------- semi-definite


@pytest.mark.parametrize("n_samples", sorted(CLAIM))
def test_semidefinite_covariances(backend: str, n_samples: int) -> None:
    rng = np.random.default_rng(6)
    bound = CLAIM[n_samples]
    for trial in range(40):
        seed = trial % 5
        mu1, mu2 = rng.normal(size=2)
        s1, s2 = rng.uniform(0.1, 2.0, size=2)
        cases = [
            # A model whose estimate is exact (zero variance): Clark with theta = s2.
            ([mu1, mu2], {"var": [0.0, s2 * s2]}, clark(mu1, mu2, 0.0, s2, 0.0), s2),
            (
                [mu1, mu2],
                {"cov": [[0.0, 0.0], [0.0, s2 * s2]]},
                clark(mu1, mu2, 0.0, s2, 0.0),
                s2,
            ),
            # Perfectly correlated and anti-correlated pairs (singular covariances).
            (
                [mu1, mu2],
                {"cov": [[s1 * s1, s1 * s2], [s1 * s2, s2 * s2]]},
                clark(mu1, mu2, s1, s2, 1.0),
                max(s1, s2),
            ),
            (
                [mu1, mu2],
                {"cov": [[s1 * s1, -s1 * s2], [-s1 * s2, s2 * s2]]},
                clark(mu1, mu2, s1, s2, -1.0),
                max(s1, s2),
            ),
            # Identical standard deviations, rho = 1: Z2 - Z1 is constant.
            (
                [mu1, mu2],
                {"cov": [[s1 * s1, s1 * s1], [s1 * s1, s1 * s1]]},
                max(mu1, mu2),
                s1,
            ),
            # A duplicated model adds nothing: three models, two of them the same.
            (
                [mu1, mu2, mu1],
                {
                    "cov": [
                        [s1 * s1, 0.0, s1 * s1],
                        [0.0, s2 * s2, 0.0],
                        [s1 * s1, 0.0, s1 * s1],
                    ]
                },
                clark(mu1, mu2, s1, s2, 0.0),
                max(s1, s2),
            ),
        ]
        for mean, kw, want, scale in cases:
            got = cr.expected_max(mean, n_samples=n_samples, seed=seed, **kw)
            assert np.isfinite(got)
            assert abs(got - want) < bound * scale, (mean, kw, got, want)


def test_duplicated_model_changes_nothing(backend: str) -> None:
    # With the same Sobol columns for the first two models, appending an exact copy of model 0
    # under a full covariance must not change E[max] beyond rounding.
    rng = np.random.default_rng(7)
    for _ in range(20):
        a = rng.normal(size=(2, 3))
        cov2 = a @ a.T
        cov3 = np.zeros((3, 3))
        cov3[:2, :2] = cov2
        cov3[2, :2] = cov3[:2, 2] = cov2[0]
        cov3[2, 2] = cov2[0, 0]
        mu = rng.normal(size=2)
        two = cr.expected_max(mu, cov=cov2, n_samples=4096)
        three = cr.expected_max(np.append(mu, mu[0]), cov=cov3, n_samples=4096)
        # Not bit-identical: the third Sobol column differs, but the copy tracks model 0.
        assert abs(two - three) < CLAIM[4096] * math.sqrt(cov2.diagonal().max())


# --------------------------------------------------------------------------- determinism


def test_deterministic_under_seed() -> None:
    rng = np.random.default_rng(8)
    mean, var = rng.normal(size=6), rng.uniform(0.1, 1.0, size=6)
    a = cr.expected_max(mean, var=var, seed=5)
    b = cr.expected_max(mean.copy(), var=var.copy(), seed=5)
    assert a == b
    values = {cr.expected_max(mean, var=var, seed=s) for s in range(8)}
    assert len(values) == 8, "different seeds must scramble the Sobol points differently"
    assert cr.expected_max(mean, var=var, n_samples=256) != cr.expected_max(mean, var=var)


def test_standard_normals() -> None:
    u = cr.standard_normals(5, 4096, 3)
    assert u.shape == (4096, 5) and u.dtype == np.float64 and u.flags.c_contiguous
    assert not u.flags.writeable
    assert np.array_equal(u, cr.standard_normals(5, 4096, 3))
    assert not np.array_equal(u, cr.standard_normals(5, 4096, 4))
    assert np.all(np.isfinite(u))
    assert np.abs(u.mean(axis=0)).max() < 0.01
    assert np.abs(u.std(axis=0) - 1.0).max() < 0.01


def test_expected_max_matches_search_quality(backend: str) -> None:
    """The search scores a supermodel with the same samples expected_max uses."""
    rng = np.random.default_rng(9)
    for trial in range(30):
        k = int(rng.integers(1, 7))
        mean, var = rng.normal(size=k), rng.uniform(0.0, 0.5, size=k)
        a = rng.normal(size=(k, k))
        cov = (a @ a.T + (a @ a.T).T) / 2
        for kw in ({"var": var}, {"cov": cov}):
            want = cr.expected_max(mean, n_samples=64, seed=trial, **kw)
            res = cr.search_supermodel(
                mean,
                np.zeros(k),
                0.0,
                ran=list(range(k)),
                n_samples=64,
                seed=trial,
                **kw,
            )
            assert res.supermodel == tuple(range(k)) and res.next_model is None
            assert res.quality == pytest.approx(want, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------- quality bounds


@functools.cache
def independent_clipped_max(
    mu: tuple[float, ...], sd: tuple[float, ...], lower: float, upper: float
) -> float:
    """E[clip(max_i Z_i, lower, upper)], Z_i ~ N(mu_i, sd_i^2) independent, by a 1-D integral
    of the survival function of the maximum: clip(M) = L + ∫_L^U 1{M > x} dx, so
    E[clip(M)] = L + ∫_L^U (1 - Π_i Φ((x - μ_i)/σ_i)) dx. An infinite bound is replaced by
    ``μ ∓ 12σ``, beyond which the maximum lies with probability below 1e-32.

    Clipping the maximum equals taking the maximum of the clipped values (clipping is
    monotone), which is what the engine computes."""
    m, s = np.array(mu), np.array(sd)
    lo = lower if math.isfinite(lower) else min(float((m - 12 * s).min()), upper)
    hi = upper if math.isfinite(upper) else max(float((m + 12 * s).max()), lo)
    if hi <= lo:
        return lo  # the whole distribution lies beyond one bound

    def survival(x: float) -> float:
        return float(-np.expm1(special.log_ndtr((x - m) / s).sum()))

    inner = sorted({float(v) for v in m if lo < v < hi})
    value, err = integrate.quad(
        survival, lo, hi, points=inner or None, limit=500, epsabs=1e-12, epsrel=1e-12
    )
    assert err < 1e-8
    return lo + value


def _draw_bounds(rng: np.random.Generator, mu: np.ndarray, sd: np.ndarray) -> tuple[float, float]:
    """Bounds that cut into the distribution of the maximum: a band, or one side only."""
    a, b = sorted(rng.uniform(mu.min() - sd.max(), mu.max() + 2 * sd.max(), size=2))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return float(a), float(max(b, a + 0.1 * sd.max()))
    if kind == 1:
        return -math.inf, float(b)
    return float(a), math.inf


def test_clipped_integral_oracle_sanity() -> None:
    # No effective bounds: the unclipped integral; one model in [0, 1]: the truncated-normal
    # closed form E[clip(Z)] = μ(Φ(b) - Φ(a)) + σ(φ(a) - φ(b)) + L Φ(a) + U (1 - Φ(b)).
    mu, sd = (0.3, -0.2, 0.1), (0.5, 1.5, 0.7)
    assert independent_clipped_max(mu, sd, -math.inf, math.inf) == pytest.approx(
        independent_max(mu, sd), abs=1e-9
    )
    m, s, lo, hi = 0.8, 0.5, 0.0, 1.0
    a, b = (lo - m) / s, (hi - m) / s
    want = (
        m * (stats.norm.cdf(b) - stats.norm.cdf(a))
        + s * (stats.norm.pdf(a) - stats.norm.pdf(b))
        + lo * stats.norm.cdf(a)
        + hi * stats.norm.sf(b)
    )
    assert independent_clipped_max((m,), (s,), lo, hi) == pytest.approx(want, abs=1e-10)
    # Bounds above everything: the lower bound; below everything: the upper bound.
    assert independent_clipped_max((0.0,), (1.0,), 50.0, math.inf) == 50.0
    assert independent_clipped_max((0.0,), (1.0,), -math.inf, -50.0) == pytest.approx(-50.0)


@pytest.mark.parametrize("n_samples", sorted(CLAIM))
def test_clipped_independent_models_integral(backend: str, n_samples: int) -> None:
    """E[max clip(Z_i)] against the 1-D integral, within the documented accuracy (clipping is
    monotone and 1-Lipschitz, so it never adds variation; measured worst |error| / max(sd):
    0.035 with 128 samples, 0.002 with 4096)."""
    rng = np.random.default_rng(10)
    worst, worst_case = 0.0, None
    for trial in range(180):
        k = 1 + trial % 11
        mu, sd = _random_family(rng, k, trial // 11 % 3)
        bounds = _draw_bounds(rng, mu, sd)
        seed = int(rng.integers(0, 100))
        want = independent_clipped_max(tuple(mu.tolist()), tuple(sd.tolist()), *bounds)
        got = cr.expected_max(mu, var=sd**2, n_samples=n_samples, seed=seed, quality_bounds=bounds)
        slack = 1e-12 * (1.0 + np.abs(mu).max() + sd.max())  # the mean's rounding
        assert bounds[0] - slack <= got <= bounds[1] + slack
        err = abs(got - want) / sd.max()
        if err > worst:
            worst, worst_case = err, (mu.tolist(), sd.tolist(), bounds, seed)
    assert worst < CLAIM[n_samples], (
        f"worst |error| / max(sd) = {worst:.4f} > {CLAIM[n_samples]} at (mean, sd, bounds, "
        f"seed) = {worst_case}"
    )


def test_clipped_correlated_models_monte_carlo(backend: str) -> None:
    """Full covariances: against 400,000 pseudo-random draws (standard error below
    0.002 * max(sd)); tolerance = the documented QMC bound at 4096 samples + 5 standard
    errors."""
    rng = np.random.default_rng(11)
    mc = np.random.default_rng(12)
    for trial in range(12):
        k = int(rng.integers(2, 7))
        a = rng.normal(size=(k, k + 1)) * rng.uniform(0.1, 1.0)
        cov = a @ a.T
        mu = rng.normal(size=k) * 0.5
        sd = np.sqrt(cov.diagonal())
        bounds = _draw_bounds(rng, mu, sd)
        z = mc.multivariate_normal(mu, cov, size=400_000, method="cholesky")
        m = np.clip(z, *bounds).max(axis=1)
        want, se = m.mean(), m.std() / math.sqrt(m.size)
        got = cr.expected_max(mu, cov=cov, n_samples=4096, quality_bounds=bounds)
        assert abs(got - want) < CLAIM[4096] * sd.max() + 5 * se, (trial, got, want, se)


def test_clipped_exact_means(backend: str) -> None:
    rng = np.random.default_rng(13)
    for _ in range(50):
        mean = rng.normal(size=int(rng.integers(1, 9)))
        lo, hi = sorted(rng.normal(size=2))
        for bounds in [(lo, hi), (-math.inf, hi), (lo, math.inf)]:
            assert cr.expected_max(mean, quality_bounds=bounds) == min(
                max(mean.max(), bounds[0]), bounds[1]
            )
            # Zero variance: every sample is its mean.
            got = cr.expected_max(mean, var=np.zeros(mean.size), quality_bounds=bounds)
            assert got == pytest.approx(np.clip(mean, *bounds).max(), rel=1e-13, abs=1e-13)


def test_clipping_moves_the_expected_max_the_right_way() -> None:
    rng = np.random.default_rng(14)
    for _ in range(30):
        k = int(rng.integers(1, 7))
        mean, var = rng.uniform(size=k), rng.uniform(0.01, 0.5, size=k)
        free = cr.expected_max(mean, var=var)
        lo, hi = sorted(rng.uniform(size=2))
        assert cr.expected_max(mean, var=var, quality_bounds=(-math.inf, hi)) <= free
        assert cr.expected_max(mean, var=var, quality_bounds=(lo, math.inf)) >= free
        band = cr.expected_max(mean, var=var, quality_bounds=(lo, hi))
        assert lo - 1e-12 <= band <= hi + 1e-12  # a mean of values in [lo, hi], rounded
        # Widening the band moves E towards the unclipped value, monotonically in each bound.
        assert cr.expected_max(mean, var=var, quality_bounds=(lo, hi + 0.5)) >= band
        assert cr.expected_max(mean, var=var, quality_bounds=(lo - 0.5, hi)) <= band


def test_clipped_expected_max_matches_search_quality(backend: str) -> None:
    """The search scores a supermodel with the same clipped samples expected_max uses."""
    rng = np.random.default_rng(15)
    for trial in range(30):
        k = int(rng.integers(1, 7))
        mean, var = rng.uniform(size=k), rng.uniform(0.0, 0.5, size=k)
        a = rng.normal(size=(k, k)) * 0.5
        cov = (a @ a.T + (a @ a.T).T) / 2
        bounds = [(0.0, 1.0), (-math.inf, 0.8), (0.4, math.inf)][trial % 3]
        for kw in ({"var": var}, {"cov": cov}, {}):
            want = cr.expected_max(mean, n_samples=64, seed=trial, quality_bounds=bounds, **kw)
            res = cr.search_supermodel(
                mean,
                np.zeros(k),
                0.0,
                ran=list(range(k)),
                n_samples=64,
                seed=trial,
                quality_bounds=bounds,
                **kw,
            )
            assert res.supermodel == tuple(range(k)) and res.next_model is None
            assert res.quality == pytest.approx(want, rel=1e-12, abs=1e-12)
