"""Online budget control: keep the realised mean cost per query on the budget as traffic drifts.

A fitted policy's multipliers ``λ`` (docs/algorithm.md §2) hold the budget only on traffic like
the training data: longer prompts or a harder query mix change what each decision costs. The
:class:`BudgetController` scales every multiplier of the policy by ``exp(u)`` and moves ``u``
(the log of the scale) with a PI loop on the relative spending error of each query,
``e = (cost − budget) / budget``::

    integral ← integral + e                       (clamped so that u stays within the bounds)
    smooth   ← smooth + (e − smooth) / smoothing   (an exponential moving average)
    u        = clip(gain_i × integral + gain_p × smooth, −max_log_scale, +max_log_scale)

The integral term is dual ascent on the budget constraint in log space: over any stretch of
queries, ``gain_i × Σ e`` is the change of ``log λ``, so a persistent overspend raises ``λ``
(cheaper decisions) until spending is back on the budget, and the cumulative overspend stays
bounded — which is what keeps every window of queries near the budget. The bounds stop
wind-up when the budget is out of reach (every model dearer than the budget, or the dearest
model cheaper than it).

:class:`TenantBudgets` holds one controller per tenant (API key → budget) and saves their
state to a JSON file (atomically) every ``save_every`` observations and on :meth:`save`, so
that a restarted gateway resumes with the same ``λ``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["BudgetController", "ControllerState", "TenantBudgets"]

STATE_FORMAT = "cascade-routing-budget-state"
STATE_VERSION = 1


@dataclass
class ControllerState:
    """Everything a controller needs to resume (what the state file holds per tenant)."""

    budget: float
    integral: float = 0.0
    smooth: float = 0.0
    log_scale: float = 0.0
    n: int = 0
    spent: float = 0.0


class BudgetController:
    """PI control of ``log λ`` so that the mean cost per query tracks ``budget``.

    Parameters
    ----------
    budget : float
        Target mean cost per query (> 0).
    gain_i, gain_p : float
        Integral and proportional gains on the relative error (see the module docstring).
    smoothing : int
        Number of queries of the moving average of the proportional term.
    max_log_scale : float
        Bound on ``|log scale|``.
    """

    def __init__(
        self,
        budget: float,
        *,
        gain_i: float = 0.05,
        gain_p: float = 0.5,
        smoothing: int = 50,
        max_log_scale: float = 6.0,
        state: ControllerState | None = None,
    ) -> None:
        if (
            isinstance(budget, bool)
            or not isinstance(budget, (int, float))
            or not (math.isfinite(budget) and budget > 0)
        ):
            raise ValueError(f"budget must be a finite number > 0, got {budget!r}")
        for name, value in (
            ("gain_i", gain_i),
            ("gain_p", gain_p),
            ("max_log_scale", max_log_scale),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not isinstance(smoothing, int) or smoothing < 1:
            raise ValueError(f"smoothing must be an int >= 1, got {smoothing!r}")
        self.gain_i = float(gain_i)
        self.gain_p = float(gain_p)
        self.smoothing = smoothing
        self.max_log_scale = float(max_log_scale)
        self._lock = threading.Lock()
        self.state = state if state is not None else ControllerState(float(budget))
        self.state.budget = float(budget)

    @property
    def budget(self) -> float:
        return self.state.budget

    @property
    def scale(self) -> float:
        """The factor applied to the policy's multipliers now."""
        return math.exp(self.state.log_scale)

    @property
    def mean_cost(self) -> float:
        """Realised mean cost per query since the state began."""
        return self.state.spent / self.state.n if self.state.n else 0.0

    def observe(self, cost: float) -> float:
        """Record the cost of one answered query; returns the new scale."""
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"cost must be finite and >= 0, got {cost!r}")
        with self._lock:
            s = self.state
            e = (cost - s.budget) / s.budget
            s.n += 1
            s.spent += cost
            s.smooth += (e - s.smooth) / self.smoothing
            s.integral += e
            bound = self.max_log_scale
            if self.gain_i > 0:  # anti-wind-up: the integral stops where u meets a bound
                p = self.gain_p * s.smooth
                s.integral = min(
                    (bound - p) / self.gain_i, max((-bound - p) / self.gain_i, s.integral)
                )
            u = self.gain_i * s.integral + self.gain_p * s.smooth
            s.log_scale = min(bound, max(-bound, u))
            return math.exp(s.log_scale)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.state)


class TenantBudgets:
    """One :class:`BudgetController` per tenant, with state saved to ``state_file``."""

    def __init__(
        self,
        budgets: Mapping[str, float],
        *,
        state_file: str | os.PathLike[str] | None = None,
        save_every: int = 100,
        **controller: Any,
    ) -> None:
        self.state_file = None if state_file is None else Path(state_file)
        self.save_every = int(save_every)
        saved = self._read_state() if self.state_file is not None else {}
        self.controllers: dict[str, BudgetController] = {}
        for tenant, budget in budgets.items():
            state = None
            if tenant in saved:
                state = ControllerState(**saved[tenant])
                if state.budget != budget:
                    log.info(
                        "tenant %s: budget changed from %g to %g; the controller resumes "
                        "from its saved multiplier",
                        tenant,
                        state.budget,
                        budget,
                    )
            self.controllers[tenant] = BudgetController(budget, state=state, **controller)
        self._since_save = 0
        self._lock = threading.Lock()

    def _read_state(self) -> dict[str, dict[str, Any]]:
        assert self.state_file is not None
        if not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text())
            if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
                raise ValueError("not a budget state file of this version")
            tenants = dict(data["tenants"])
            for st in tenants.values():
                values = asdict(ControllerState(**st)).values()  # checks the field names
                if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                    raise ValueError("a controller state holds a non-finite or non-number value")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{self.state_file} is not a readable budget state file ({exc}); move it away "
                "to start the controllers afresh"
            ) from exc
        return tenants

    def controller(self, tenant: str) -> BudgetController:
        return self.controllers[tenant]

    def observe(self, tenant: str, cost: float) -> float:
        scale = self.controllers[tenant].observe(cost)
        with self._lock:
            self._since_save += 1
            due = self.state_file is not None and self._since_save >= self.save_every
            if due:
                self._since_save = 0
        if due:
            self.save()
        return scale

    def save(self) -> None:
        """Write every controller's state atomically (no-op without a state file)."""
        if self.state_file is None:
            return
        data = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "tenants": {t: c.snapshot() for t, c in self.controllers.items()},
        }
        tmp = self.state_file.with_name(self.state_file.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.state_file)
