"""Shared fixtures: run every kernel test on every backend; Hypothesis profiles.

Set ``CASCADE_ROUTING_REQUIRE_ALL_BACKENDS=1`` (CI does) to turn a backend that cannot be
imported into a test failure instead of a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from _backends import BACKENDS, FAST_BACKENDS, activate_backend

_HYPOTHESIS_COMMON = {
    "deadline": None,
    # The backend fixture is function-scoped on purpose (it switches a process-wide setting);
    # it is the same for every example of one test, so sharing it across examples is safe.
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
    ],
}
settings.register_profile("ci", derandomize=True, max_examples=200, **_HYPOTHESIS_COMMON)
settings.register_profile("dev", max_examples=200, **_HYPOTHESIS_COMMON)
settings.register_profile("thorough", max_examples=2000, **_HYPOTHESIS_COMMON)
settings.load_profile(
    os.environ.get(
        "HYPOTHESIS_PROFILE",
        "ci" if os.environ.get("CI", "").lower() == "true" else "dev",
    )
)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of the active backend; the test runs once per backend."""
    yield from activate_backend(request.param)


@pytest.fixture(params=FAST_BACKENDS)
def fast_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Like ``backend`` but only the compiled backends (to compare with the NumPy reference)."""
    yield from activate_backend(request.param)
