"""The base of every strategy: construction checks, plans, selection, equivalences."""

from __future__ import annotations

import dataclasses
import inspect
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _strategy_cases import (
    MODELS,
    ScoreEstimator,
    make_live,
    random_states,
    same_replay,
    synthetic,
)

import cascade_routing as cr
from cascade_routing import _reference
from cascade_routing.engine import DEFAULT_MAX_WORK
from cascade_routing.estimators import ConstantCost
from cascade_routing.strategies import (
    Cascade,
    CascadeRouter,
    Plan,
    Router,
    Strategy,
    ThresholdCascade,
)
from cascade_routing.strategies import base as base_module
from cascade_routing.validation import UnknownModelError

CLASSES = [Router, ThresholdCascade, Cascade, CascadeRouter]


# --------------------------------------------------------------------------- equivalences


@pytest.mark.parametrize("noisy", [True, False])
def test_cascade_router_with_depth_one_is_routing(noisy: bool) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 5, 3, noisy)
    for lam in (0.0, 5.0, 40.0, 300.0):
        router = Router(qe, ce, models, order="given").set_lambdas(lam)
        cr1 = CascadeRouter(qe, ce, models, order="given", max_depth=1).set_lambdas(lam)
        for i in queries:
            assert router.next_model(i, [None] * 5) == cr1.next_model(i, [None] * 5)
        same_replay(router.replay(queries, answers, q, c), cr1.replay(queries, answers, q, c))


@pytest.mark.parametrize("noisy", [True, False])
def test_cascade_router_on_prefixes_is_the_optimal_cascade(noisy: bool) -> None:
    qe, ce, models, queries, answers, q, c = synthetic(300, 5, 4, noisy)
    for lam in (0.0, 5.0, 40.0, 300.0):
        cascade = Cascade(qe, ce, models, order="given").set_lambdas(lam)
        prefix = CascadeRouter(qe, ce, models, order="given", prefixes_only=True)
        prefix.set_lambdas(lam)
        for i in queries[:100]:
            for j in range(5):
                state = [f"a{m}" if m < j else None for m in range(5)]
                assert cascade.next_model(i, state) == prefix.next_model(i, state)
        same_replay(cascade.replay(queries, answers, q, c), prefix.replay(queries, answers, q, c))


# --------------------------------------------------------------------------- plans and selection


def test_select_and_next_model_interface() -> None:
    strat, models = make_live()
    assert strat.select("q", [None] * 4) is None
    assert strat.select("q", [{"score": 0.3}, {"score": 0.8}, None, None]) == "medium"
    assert strat.next_model("q", [None] * 4) in models
    assert strat.next_models(["a", "b"], [[None] * 4, [None] * 4]) == [
        strat.next_model("a", [None] * 4),
        strat.next_model("b", [None] * 4),
    ]
    thr = ThresholdCascade(
        ScoreEstimator((0.5,) * 4), ConstantCost((1, 2, 3, 4)), models, order="given"
    )
    thr.set_lambdas(0.3)  # continue while the last score is below 0.7
    assert thr.next_model("q", [None] * 4) == "small"
    assert thr.next_model("q", [{"score": 0.5}, None, None, None]) == "medium"
    assert thr.next_model("q", [{"score": 0.9}, None, None, None]) is None
    assert thr.select("q", [{"score": 0.9}, {"score": 0.1}, None, None]) == "medium"


def test_plan_is_a_frozen_record_of_the_decision() -> None:
    strat, models = make_live()
    plan = strat.plan("q", [None] * 4)
    assert isinstance(plan, Plan) and not plan.stop
    assert plan.model == models[plan.index] == strat.next_model("q", [None] * 4)
    assert plan.model in plan.supermodel
    assert plan.supermodel == tuple(models[i] for i in plan.members)
    assert plan.estimated_cost == [1.0, 2.0, 3.0, 4.0][plan.index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.index = 0  # type: ignore[misc]
    # Excluding the planned model plans around it.
    other = strat.plan("q", [None] * 4, exclude=[plan.model])
    assert other.model != plan.model
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        strat.plan("q", [None] * 4, exclude=["nope"])
    everything = strat.plan("q", [None] * 4, exclude=models)
    assert everything.stop and everything.model is None


def test_select_ties_go_to_the_earliest_model_in_the_model_order() -> None:
    prior = (0.5, 0.5, 0.5, 0.5)
    tied = [{"score": 0.7}, {"score": 0.7}, {"score": 0.7}, None]
    for order in (MODELS, MODELS[::-1], ["large", "small", "huge", "medium"]):
        strat = CascadeRouter(
            ScoreEstimator(prior), ConstantCost((1, 2, 3, 4)), MODELS, order=order
        ).set_lambdas(0.0)
        first_run = next(m for m in order if tied[MODELS.index(m)] is not None)
        assert strat.select("q", tied) == first_run


def test_the_shared_rules_are_the_reference_kernels() -> None:
    # The strategies call the two scalar rules of _reference (no private copies).
    assert base_module.select_best is _reference.select_best
    from cascade_routing.strategies import concrete

    assert concrete.threshold_continues is _reference.threshold_continues
    # The rules themselves, on the cases that matter: NaN never continues, the depth stops.
    assert _reference.threshold_continues(0.3, 0.5, 1, 3)
    assert not _reference.threshold_continues(0.5, 0.5, 1, 3)
    assert not _reference.threshold_continues(0.3, 0.5, 3, 3)
    assert not _reference.threshold_continues(float("nan"), 0.5, 1, 3)
    ran = np.array([0, 1, 1, 1], dtype=np.uint8)
    assert _reference.select_best(np.array([9.0, 0.2, 0.7, 0.7]), ran) == 2
    assert _reference.select_best(np.array([9.0, 0.2, 0.7, 0.7]), np.zeros(4, np.uint8)) == -1


def test_the_base_never_asks_which_subclass_it_is() -> None:
    import cascade_routing.strategies as package

    for name in ("base", "replay", "fitting", "loop", "persistence"):
        source = inspect.getsource(getattr(package, name))
        assert "ThresholdCascade" not in source.replace("``ThresholdCascade``", ""), name
        assert "isinstance(self" not in source, name


# --------------------------------------------------------------------------- construction


def test_settings_are_the_keyword_parameters_of_the_constructor() -> None:
    qe, ce, models, *_ = synthetic(10, 3, 0)
    for cls in CLASSES:
        params = inspect.signature(cls.__init__).parameters.values()
        assert not any(p.kind is p.VAR_KEYWORD for p in params), cls
        keywords = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        strat = cls(qe, ce, models)
        assert list(strat.settings()) == [k for k in keywords if k != "order"]
        assert strat.settings()["max_work"] == DEFAULT_MAX_WORK
    assert "max_depth" not in Router.setting_names()
    assert "force_order" in CascadeRouter.setting_names()


def test_a_strategy_whose_decisions_could_exceed_max_work_fails_at_construction() -> None:
    k = 30
    models = [f"m{i}" for i in range(k)]
    qe, ce = ScoreEstimator(np.full(k, 0.5)), ConstantCost(np.ones(k))
    with pytest.raises(ValueError, match="max_depth"):
        CascadeRouter(qe, ce, models)  # 2^30 - 1 supermodels x 128 samples
    CascadeRouter(qe, ce, models, max_depth=2)  # C(30, <=2) x 128 samples is small
    Cascade(qe, ce, models)  # 30 prefixes x 128 samples
    with pytest.raises(ValueError, match="max_depth"):
        CascadeRouter(qe, ce, models, force_order=True)  # ordered, but not only prefixes
    Router(qe, ce, models)
    ThresholdCascade(qe, ce, models)  # no search: any depth
    with pytest.raises(ValueError, match="max_depth"):
        CascadeRouter(qe, ce, models[:8], max_work=100)
    CascadeRouter(qe, ce, models[:8], max_work=2**8 * 128)
    with pytest.raises(TypeError, match="max_work"):
        CascadeRouter(qe, ce, models[:3], max_work=1.5)


def test_the_optimal_cascade_over_64_models_is_built_and_decides() -> None:
    """A prefix-only search scores one candidate per prefix, so 64 models are within the
    work cap at any depth."""
    k = 64
    models = [f"m{i}" for i in range(k)]
    quality = np.linspace(0.2, 0.9, k)
    cascade = Cascade(ScoreEstimator(quality), ConstantCost(np.linspace(1, 64, k)), models)
    cascade.set_lambdas([0.0])
    assert cascade.next_model(0, [None] * k) == "m0"  # a cascade starts with the first model


def test_more_than_64_models_fail_at_construction() -> None:
    models = [f"m{i}" for i in range(65)]
    with pytest.raises(ValueError, match="at most 64"):
        Router(ScoreEstimator(np.zeros(65)), ConstantCost(np.ones(65)), models)


def test_bad_constructor_arguments_are_named() -> None:
    qe, ce, models, *_ = synthetic(10, 3, 16)
    with pytest.raises(UnknownModelError, match="'nope'"):
        CascadeRouter(qe, ce, models, order=["model-0", "model-1", "nope"])
    with pytest.raises(ValueError, match="exactly once"):
        CascadeRouter(qe, ce, models, order=["model-0", "model-1"])
    with pytest.raises(ValueError, match="order must be one of"):
        CascadeRouter(qe, ce, models, order="random")
    with pytest.raises(ValueError, match="duplicates"):
        CascadeRouter(qe, ce, ["a", "a", "b"])
    with pytest.raises(ValueError, match="max_depth"):
        CascadeRouter(qe, ce, models, max_depth=0)
    with pytest.raises(TypeError, match="force_order"):
        CascadeRouter(qe, ce, models, force_order="false")
    with pytest.raises(ValueError, match="n_samples"):
        CascadeRouter(qe, ce, models, n_samples=100)
    with pytest.raises(ValueError, match="seed"):
        CascadeRouter(qe, ce, models, seed=-1)
    with pytest.raises(TypeError, match="rounding_digits"):
        CascadeRouter(qe, ce, models, rounding_digits=2.0)
    with pytest.raises(ValueError, match="quality_bounds"):
        CascadeRouter(qe, ce, models, quality_bounds=(1.0, 0.0))
    with pytest.raises(TypeError, match="quality_bounds"):
        CascadeRouter(qe, ce, models, quality_bounds="0,1")
    with pytest.raises(TypeError, match="quality_estimator"):
        CascadeRouter(object(), ce, models)
    with pytest.raises(TypeError, match="unexpected keyword"):
        Router(qe, ce, models, max_depth=2)  # type: ignore[call-arg]


def test_set_lambdas_is_validated_like_a_policy_file() -> None:
    qe, ce, models, *_ = synthetic(10, 3, 16)
    strat = CascadeRouter(qe, ce, models)
    for bad, match in (
        (-1.0, "non-negative"),
        (float("nan"), "NaN"),
        ([1.0, 2.0, 3.0, 4.0], "1 to 3"),
        ([], "1 to 3"),
        ([[1.0]], "1-D"),
        (1e200, "1e\\+100"),
    ):
        with pytest.raises(ValueError, match=match):
            strat.set_lambdas(bad)
    with pytest.raises(TypeError, match="lambdas"):
        strat.set_lambdas("1.0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="as many entries"):
        strat.set_lambdas([1.0, 2.0], lambdas_expensive=[1.0])
    with pytest.raises(ValueError, match="gamma"):
        strat.set_lambdas(1.0, gamma=1.5)
    with pytest.raises(TypeError, match="gamma"):
        strat.set_lambdas(1.0, gamma=True)
    assert Router(qe, ce, models).n_steps() == 1
    with pytest.raises(ValueError, match="1 to 1"):
        Router(qe, ce, models).set_lambdas([1.0, 2.0])
    ThresholdCascade(qe, ce, models).set_lambdas([-0.5, 0.2])  # offsets may be negative
    with pytest.raises(ValueError, match="1 to 2"):
        ThresholdCascade(qe, ce, models).set_lambdas([-0.5, 0.2, 0.1])


def test_bad_input_is_rejected_with_the_culprit_named() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(50, 3, 12)
    strat = CascadeRouter(qe, ce, models)
    with pytest.raises(ValueError, match="answers has 49 rows"):
        strat.fit(queries, answers[:49], q, c, budget=0.01)
    with pytest.raises(ValueError, match=r"answers\[0\] has 2 entries"):
        strat.fit(queries, [row[:2] for row in answers], q, c, budget=0.01)
    with pytest.raises(ValueError, match="missing answer"):
        strat.fit(queries, [[None] * 3] * 50, q, c, budget=0.01)
    with pytest.raises(ValueError, match="quality must have shape"):
        strat.fit(queries, answers, q[:10], c, budget=0.01)
    bad = q.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="quality contains NaN"):
        strat.fit(queries, answers, bad, c, budget=0.01)
    with pytest.raises(ValueError, match="cost must be non-negative"):
        strat.fit(queries, answers, q, -c, budget=0.01)
    with pytest.raises(ValueError, match="budget must be"):
        strat.fit(queries, answers, q, c, budget=-1.0)
    with pytest.raises(TypeError, match="budget must be a number"):
        strat.fit(queries, answers, q, c, budget="cheap")
    with pytest.raises(ValueError, match="lambdas must be"):
        strat.fit(queries, answers, q, c, budget=0.01, lambdas="sometimes")
    with pytest.raises(ValueError, match="row indices outside"):
        strat.fit(queries + 10, answers, q, c, budget=0.01)
    with pytest.raises(RuntimeError, match="call fit"):
        strat.next_model(0, [None] * 3)

    class WrongShape:
        def predict(self, queries, answers):
            return np.zeros((len(queries), 2))

    broken = CascadeRouter(WrongShape(), ce, models).set_lambdas(1.0)
    with pytest.raises(ValueError, match=r"quality estimator returned means of shape \(1, 2\)"):
        broken.next_model(0, [None] * 3)

    class NegativeCost:
        def predict(self, queries, answers):
            return -np.ones((len(queries), 3))

    with pytest.raises(ValueError, match="cost estimator returned negative"):
        CascadeRouter(qe, NegativeCost(), models).set_lambdas(1.0).next_model(0, [None] * 3)


def test_decisions_are_thread_safe() -> None:
    qe, ce, models, queries, answers, q, c = synthetic(400, 5, 13)
    strat = CascadeRouter(qe, ce, models).fit(queries, answers, q, c, budget=float(c.mean()) * 0.4)
    states = random_states(400, 5, 14)
    expected = [strat.next_model(i, s) for i, s in zip(queries, states)]
    expected_replay = strat.replay(queries, answers, q, c)

    def decide(chunk: int):
        rows = range(chunk, 400, 8)
        got = [strat.next_model(int(i), states[i]) for i in rows]
        return chunk, got, strat.replay(queries, answers, q, c, n_threads=2)

    with ThreadPoolExecutor(max_workers=8) as pool:
        for chunk, got, rep in pool.map(decide, range(8)):
            assert got == [expected[i] for i in range(chunk, 400, 8)]
            same_replay(rep, expected_replay)


def test_the_package_keeps_its_public_names() -> None:
    for name in (
        "AllModelsFailedError",
        "EstimatorFailedError",
        "Plan",
        "Cascade",
        "CascadeRouter",
        "ReplayResult",
        "Router",
        "RunResult",
        "Step",
        "Strategy",
        "ThresholdCascade",
        "load_policy",
    ):
        assert getattr(cr, name) is getattr(cr.strategies, name)
    assert issubclass(CascadeRouter, Strategy)
