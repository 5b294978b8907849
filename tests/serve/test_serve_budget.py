"""Online budget control: the drift simulation, the controller's bounds, and restarts."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from _serve_fakes import MODELS, FakeUpstream, fake_env, upstream_config, write_policy

from cascade_routing.serve import BudgetController, TenantBudgets, build_gateway
from cascade_routing.serve.drift import run_drift_simulation


def test_drift_simulation_tracks_the_budget_in_every_window():
    t0 = time.perf_counter()
    rep = run_drift_simulation()  # 20,000 queries, drift at 10,000
    seconds = time.perf_counter() - t0
    assert len(rep.spend["controlled"]) == 9  # windows of 2,000 after the 2,000 warm-up
    assert rep.max_abs_error("controlled") <= 0.02, rep.table()
    # The drift matters: the fitted policy alone overspends after it.
    assert max(rep.spend["static"][4:]) > 0.2, rep.table()
    # Quality at least the best static policy that also keeps every window on budget.
    assert rep.quality["controlled"] >= rep.quality["static_within_budget"], rep.table()
    assert max(rep.spend["static_within_budget"]) <= 0.02
    # λ moved up after the drift (dearer prompts need a higher price of cost).
    assert np.mean(rep.lam_scale[6:]) > np.mean(rep.lam_scale[1:5])
    assert seconds < 60


def test_controller_converges_on_a_synthetic_stream_with_a_level_shift():
    rng = np.random.default_rng(3)
    budget = 1.0
    ctl = BudgetController(budget, gain_i=0.05, gain_p=0.5)
    costs = []
    for t in range(20_000):
        level = 1.0 if t < 10_000 else 2.3
        # Spend falls with the scale of λ (elasticity 0.8), noisy per query.
        cost = level * 1.3 * ctl.scale**-0.8 * rng.lognormal(0.0, 0.8) / math.exp(0.32)
        costs.append(cost)
        ctl.observe(cost)
    c = np.array(costs)
    windows = c[2000:].reshape(9, 2000).mean(axis=1) / budget - 1
    assert np.all(np.abs(windows) <= 0.02), windows
    assert abs(math.log(ctl.scale) - math.log((2.3 * 1.3) ** (1 / 0.8))) < 0.5


def test_bounds_stop_wind_up_and_recovery_is_quick():
    ctl = BudgetController(1.0, gain_i=0.1, gain_p=0.0, max_log_scale=3.0)
    for _ in range(5_000):  # unreachable budget: every query costs 10×
        ctl.observe(10.0)
    assert ctl.scale == pytest.approx(math.exp(3.0))
    n = 0
    while ctl.scale > 1.0 and n < 10_000:  # spending falls to zero: λ comes down fast
        ctl.observe(0.0)
        n += 1
    assert n <= 40  # 3 / 0.1 queries, not thousands of wound-up steps


def test_bad_input():
    with pytest.raises(ValueError, match="budget"):
        BudgetController(0.0)
    with pytest.raises(ValueError, match="gain_i"):
        BudgetController(1.0, gain_i=-1)
    ctl = BudgetController(1.0)
    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="cost"):
            ctl.observe(bad)


def test_state_is_saved_and_restored(tmp_path):
    path = tmp_path / "state.json"
    tb = TenantBudgets({"a": 1.0, "b": 2.0}, state_file=path, save_every=100)
    rng = np.random.default_rng(0)
    for _ in range(250):
        tb.observe("a", float(rng.exponential(1.5)))
    saved = json.loads(path.read_text())["tenants"]["a"]
    assert saved["n"] == 200  # saved every 100 observations
    tb.save()
    again = TenantBudgets({"a": 1.0, "b": 2.0}, state_file=path)
    assert again.controller("a").snapshot() == tb.controller("a").snapshot()
    assert again.controller("a").scale == tb.controller("a").scale != 1.0
    assert again.controller("b").scale == 1.0
    path.write_text("{broken")
    with pytest.raises(ValueError, match="not a readable budget state file"):
        TenantBudgets({"a": 1.0}, state_file=path)


def test_gateway_restart_resumes_lambda_from_the_saved_state(tmp_path):
    import openai
    from _serve_fakes import ServerThread

    policy = write_policy(tmp_path / "policy.json", lam=100.0)
    state = tmp_path / "budget.json"
    with FakeUpstream("small") as s, FakeUpstream("medium") as m, FakeUpstream("large") as lg:
        fakes = {"small": s, "medium": m, "large": lg}
        cfg = upstream_config(
            fakes, budget={"default": 1e-6, "state_file": str(state), "gain_i": 0.5}
        )
        gw = build_gateway(policy, cfg, environ=fake_env(MODELS))
        with ServerThread(gw.app(), lifespan="on") as srv:
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
            for _ in range(5):
                client.chat.completions.create(
                    model="cascade-routing", messages=[{"role": "user", "content": "hi"}]
                )
            client.close()
        scale = gw.budgets.controller("default").scale
        assert scale > 1.0  # overspent a tiny budget: λ went up
        again = build_gateway(policy, cfg, environ=fake_env(MODELS))
    assert again.budgets.controller("default").scale == pytest.approx(scale, rel=1e-12)
    lam = again.strategies["default"].lambdas_
    assert lam is not None and lam[0] == pytest.approx(100.0 * scale, rel=1e-12)
