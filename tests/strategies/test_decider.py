"""The prepared decider (docs/decider.md): the same decisions as the unprepared next_model path
on thousands of seeded states, on every backend; its table saved with the policy and refused
when corrupted or mismatched; thread safety."""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import numpy as np
import pytest
from _decider_cases import RunSetEstimator, _answers, _strategy

import cascade_routing as cr
from cascade_routing.estimators import (
    ConstantCost,
    DefaultUncertainty,
    TwoPhaseQuality,
)
from cascade_routing.options import UncertaintyMode
from cascade_routing.strategies import CascadeRouter, Strategy
from cascade_routing.strategies.decider import (
    MAX_TABLE_BYTES,
    Decider,
    mask_of,
    reachable_runsets,
    table_runsets,
)


def _unprepared(s: Strategy, query: Any, answers: list[Any]) -> cr.Plan:
    """next_model's path before the decider: full estimates, a Cholesky per call."""
    lams = s._check_fitted()
    ran = s._check_state(answers)
    est, cst = s._estimate([query], [answers])
    return s._plan(query, ran, est, cst, frozenset(), lams)


def _check_states(backend: str, kind: str, n_strategies: int, n_states: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(n_strategies):
        k = int(rng.integers(1, 12))
        s = _strategy(rng, k, kind)
        for q in range(n_states):
            answers = _answers(rng, s)
            want = _unprepared(s, q, answers)
            got = s.plan(q, answers)
            assert got == want, (backend, kind, type(s).__name__, k, answers)
            checked += 1
    return checked


@pytest.mark.parametrize("kind", ["exact", "var", "cov"])
def test_decider_equals_next_model_path(backend: str, kind: str) -> None:
    # Thousands of states on the compiled backends; the NumPy reference is slow at k = 11.
    n_strat, n_states = (60, 40) if backend != "numpy" else (12, 12)
    checked = _check_states(backend, kind, n_strat, n_states, seed=hash(kind) % 1000)
    assert checked == n_strat * n_states


def test_decider_is_used_and_uncertainty_is_not_recomputed() -> None:
    rng = np.random.default_rng(3)
    s = _strategy(rng, 6, "cov")
    est = s.quality_estimator
    before = est.calls
    for q in range(20):
        s.plan(q, [None] * 6)
    assert est.calls == before  # every factor came from the table built at prepare()
    d = s.decider()
    assert d is s.decider()  # built once
    assert d.table is not None and d.table.mode == UncertaintyMode.COVARIANCE


def test_decider_direct_matches_engine_search(backend: str) -> None:
    """Decider.decide against the backend's search kernel given the same Cholesky factor."""
    rng = np.random.default_rng(11)
    be = cr._backend.active()
    for _ in range(30):
        k = int(rng.integers(1, 9))
        s = _strategy(rng, k, "cov")
        d = s.decider()
        assert d.table is not None
        normals = cr.standard_normals(k, s.n_samples, s.sample_seed)
        for mask, chol in zip(d.table.runsets.tolist(), d.table.factors):
            q, c = rng.uniform(0, 1, k), rng.uniform(0, 1, k)
            expensive = bool(rng.random() < 0.5)
            nm, members, util = d.decide(q, c, mask, expensive)
            j = bin(mask).count("1")
            lams = s.lambdas_expensive_ if expensive else s.lambdas_
            lam = float(lams[min(j, lams.shape[0] - 1)])
            ran = np.array([(mask >> i) & 1 for i in range(k)], dtype=np.uint8)
            options = dataclasses.replace(
                s.options_, max_depth=max(min(s.options_.max_depth, k), j)
            )
            want = be.run_search(
                q, c, lam, UncertaintyMode.COVARIANCE, np.zeros(0), chol, normals, ran,
                options, expensive,
            )  # fmt: skip
            assert nm == want[0]
            assert members == mask_of(np.asarray(want[1]) != 0)
            assert util == want[2]


def test_decide_batch_equals_decide(backend: str) -> None:
    rng = np.random.default_rng(5)
    s = _strategy(rng, 7, "cov")
    d = s.decider()
    n = 300
    sets = [m for m in reachable_runsets(7, s._depth(7), s.prefixes_only)]
    ran = np.array([sets[i] for i in rng.integers(0, len(sets), n)], dtype=np.uint64)
    q, c = rng.uniform(0, 1, (n, 7)), rng.uniform(0, 1, (n, 7))
    e = rng.random(n) < 0.5
    nm, mem, util = d.decide_batch(q, c, ran, e)
    for i in range(n):
        assert (nm[i], mem[i], util[i]) == d.decide(q[i], c[i], int(ran[i]), bool(e[i]))


def test_a_replaced_estimator_gets_its_own_table() -> None:
    rng = np.random.default_rng(12)
    s = _strategy(rng, 5, "cov")
    s.plan(0, [None] * 5)
    s.quality_estimator = RunSetEstimator(5, 99, "cov")
    answers = [None, "a", None, None, None]
    assert s.plan(0, answers) == _unprepared(s, 0, answers)
    assert s.decider().table is s.runset_table_ and s._table_source is s.quality_estimator


def test_decider_checks_its_input() -> None:
    rng = np.random.default_rng(1)
    s = _strategy(rng, 4, "cov")
    d = s.decider()
    q, c = np.full(4, 0.5), np.ones(4)
    with pytest.raises(ValueError, match="shape"):
        d.decide(q[:3], c, 0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        d.decide(np.array([0.5, np.nan, 0.5, 0.5]), c, 0)
    with pytest.raises(ValueError, match="bit mask"):
        d.decide(q, c, 1 << 4)
    with pytest.raises(TypeError, match="int bit mask"):
        d.decide(q, c, 1.0)  # type: ignore[arg-type]


def test_core_decider_names_bad_arguments() -> None:
    from _backends import require_backend

    require_backend("cpp")
    from cascade_routing import _core

    normals = np.zeros((4, 2))
    lam = np.zeros(1)
    ok = dict(
        k=2, mode=2, normals=normals, lam_cheap=lam, lam_expensive=lam, max_depth=2,
        force_order=False, prefixes_only=False, digits=8, lower=-np.inf, upper=np.inf,
        runsets=np.array([0], dtype=np.uint64), factors=np.eye(2)[None].copy(),
    )  # fmt: skip
    core = _core.Decider(**ok)
    with pytest.raises(TypeError, match="factors must be a numpy array of dtype float64"):
        _core.Decider(**{**ok, "factors": np.eye(2, dtype=np.float32)[None]})
    with pytest.raises(ValueError, match="factors must have shape"):
        _core.Decider(**{**ok, "factors": np.eye(2)})
    with pytest.raises(ValueError, match="lam_expensive must have shape"):
        _core.Decider(**{**ok, "lam_expensive": np.zeros(2)})
    with pytest.raises(ValueError, match="distinct"):
        _core.Decider(
            **{**ok, "runsets": np.zeros(2, dtype=np.uint64), "factors": np.zeros((2, 2, 2))}
        )
    with pytest.raises(KeyError, match="no factor"):
        core.decide(np.zeros(2), np.zeros(2), 1, False)
    with pytest.raises(ValueError, match="cost"):
        core.decide(np.zeros(2), np.zeros(3), 0, False)


def test_table_size_is_bounded() -> None:
    sets, complete = table_runsets(11, 11, False, UncertaintyMode.COVARIANCE)
    assert complete and len(sets) == 2048
    sets, complete = table_runsets(40, 40, False, UncertaintyMode.COVARIANCE)
    assert not complete and len(sets) * 40 * 40 * 8 <= MAX_TABLE_BYTES
    assert reachable_runsets(4, 2, True) == [0, 1, 3]


def test_default_uncertainty_after_load_needs_no_training_pass(tmp_path: Any) -> None:
    rng = np.random.default_rng(0)
    n, k = 80, 5
    ante = rng.uniform(0, 1, (n, k))
    post = np.clip(ante + rng.normal(0, 0.2, (n, k)), 0, 1)
    cost = np.tile(np.linspace(1.0, 3.0, k), (n, 1))
    qe = DefaultUncertainty(TwoPhaseQuality(ante, post)).fit(range(n), [["x"] * k] * n)
    models = [f"m{i}" for i in range(k)]
    s = CascadeRouter(qe, ConstantCost(cost[0]), models, max_depth=3)
    s.fit(np.arange(n), [["x"] * k] * n, post, cost, budget=2.0)
    assert s.runset_table_ is not None and s.runset_table_.complete
    path = tmp_path / "policy.json"
    s.save(path)
    # An unfitted DefaultUncertainty: any pass over a training log would raise.
    fresh = DefaultUncertainty(TwoPhaseQuality(ante, post))
    loaded = CascadeRouter.load(path, fresh, ConstantCost(cost[0]), models=models)
    for q in range(n):
        answers = [None] * k
        for _ in range(k):
            plan = loaded.plan(q, answers)
            assert plan == s.plan(q, answers)
            if plan.stop:
                break
            answers[plan.index] = "x"


def _saved(tmp_path: Any) -> tuple[Any, dict[str, Any], Strategy]:
    rng = np.random.default_rng(2)
    s = _strategy(rng, 5, "cov")
    path = tmp_path / "p.json"
    s.save(path)
    return path, json.loads(path.read_text()), s


def _load(path: Any, s: Strategy) -> Strategy:
    return Strategy.load(path, s.quality_estimator, s.cost_estimator, models=s.models)


def test_table_round_trip(tmp_path: Any) -> None:
    path, data, s = _saved(tmp_path)
    assert "runset_table" in data
    t = _load(path, s).runset_table_
    assert t is not None and s.runset_table_ is not None
    assert t.mode == s.runset_table_.mode and t.complete == s.runset_table_.complete
    np.testing.assert_array_equal(t.runsets, s.runset_table_.runsets)
    assert t.factors.tobytes() == s.runset_table_.factors.tobytes()


def _edit(path: Any, data: dict[str, Any], **table: Any) -> None:
    path.write_text(json.dumps({**data, "runset_table": {**data["runset_table"], **table}}))


def test_corrupted_table_is_refused(tmp_path: Any) -> None:
    path, data, s = _saved(tmp_path)
    factors = data["runset_table"]["factors"]
    flipped = ("A" if factors[10] != "A" else "B").join([factors[:10], factors[11:]])
    _edit(path, data, factors=flipped)
    with pytest.raises(ValueError, match="runset_table.*checksum"):
        _load(path, s)
    _edit(path, data, runsets=data["runset_table"]["runsets"][:-1])
    with pytest.raises(ValueError, match="runset_table"):
        _load(path, s)
    _edit(path, data, factors="not base64!")
    with pytest.raises(ValueError, match="runset_table"):
        _load(path, s)


def test_a_table_with_a_huge_factor_is_refused_at_load(tmp_path: Any) -> None:
    """Fuzzing finding: a factor of 1e308 (checksum written again) loaded, and every decision
    at its run-set then failed as if the estimates were not finite."""
    import base64
    import struct

    from cascade_routing.strategies.persistence import _table_digest

    path, data, s = _saved(tmp_path)
    t = data["runset_table"]
    raw = bytearray(base64.b64decode(t["factors"]))
    struct.pack_into("<d", raw, 0, 1e200)
    runsets = np.array(t["runsets"], dtype="<u8").tobytes()
    digest = _table_digest(t["mode"], data["models"], t["order"], runsets, bytes(raw))
    _edit(path, data, factors=base64.b64encode(bytes(raw)).decode(), sha256=digest)
    with pytest.raises(ValueError, match=r"runset_table\.factors.*beyond 1e100"):
        _load(path, s)


def test_a_decider_whose_decision_could_run_for_hours_is_refused() -> None:
    """Fuzzing finding: a core decider over 40 models and every depth searched 2^40
    candidates in one call, deaf to Ctrl-C. The core now refuses it as the strategies do."""
    from cascade_routing._core import Decider as CoreDecider

    args = (np.zeros((0, 40)), np.zeros(1), np.zeros(1), 40, False, False, 8, -np.inf, np.inf)
    empty = (np.zeros(0, np.uint64), np.zeros((0, 40)))
    with pytest.raises(ValueError, match="max_work"):
        CoreDecider(40, 0, *args, *empty)
    CoreDecider(40, 0, *args, *empty, max_work=2.0**41)  # a deliberate, larger cap
    # The cap counts samples too: 11 models, all depths, 128 samples fit the default.
    s = _strategy(np.random.default_rng(2), 11, "cov")
    assert s.decider().decide(np.full(11, 0.5), np.ones(11), 0) is not None


def test_mismatched_table_is_refused(tmp_path: Any) -> None:
    path, data, s = _saved(tmp_path)
    # The same table for another model order: its checksum binds it to the order.
    order = list(reversed(data["order"]))
    path.write_text(json.dumps({**data, "order": order}))
    with pytest.raises(ValueError, match="runset_table.*(order|checksum)"):
        _load(path, s)
    _edit(path, data, mode="independent")
    with pytest.raises(ValueError, match="runset_table"):
        _load(path, s)
    _edit(path, data, n_models=4)
    with pytest.raises(ValueError, match="runset_table"):
        _load(path, s)


def test_decisions_are_thread_safe() -> None:
    rng = np.random.default_rng(9)
    s = _strategy(rng, 8, "cov")
    states = [(q, _answers(rng, s)) for q in range(200)]
    want = [s.plan(q, a) for q, a in states]
    s._decider = None  # threads race to build it, and decide at once
    errors: list[BaseException] = []
    got: dict[int, list[Any]] = {}

    def work(t: int) -> None:
        try:
            got[t] = [s.plan(q, a) for q, a in states]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert all(got[t] == want for t in range(4))


def test_decider_instance_has_expected_type() -> None:
    s = _strategy(np.random.default_rng(4), 3, "exact")
    d = s.decider()
    assert isinstance(d, Decider) and d.mode == UncertaintyMode.EXACT and d.table is None
