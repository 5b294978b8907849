"""The decision loop: failures, timeouts, estimator failures, invalid costs and the caps.

A counting client checks that no fault makes the loop call (and pay) more models than it
should: an estimator failure or a bad cost must never cascade into calling every model.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
from _strategy_cases import MODELS, ScoreEstimator, make_live

from cascade_routing.estimators import ConstantCost, QualityEstimate
from cascade_routing.strategies import (
    AllModelsFailedError,
    CascadeRouter,
    EstimatorFailedError,
)


class Counting:
    """A model client that counts its calls; ``reply(name)`` gives the value returned."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.calls: list[str] = []

    def __call__(self, name, query):
        self.calls.append(name)
        return self.reply(name)


def test_run_records_every_step_and_returns_the_best_answer() -> None:
    strat, models = make_live()
    client = Counting(
        lambda name: ({"score": 0.95 if name == "medium" else 0.2, "text": name}, 1.5)
    )
    result = strat.run("q1", client)
    assert result.trace[-1].status == "stop"
    assert [s.model for s in result.trace[:-1]] == client.calls
    assert result.model == "medium" and result.answer["text"] == "medium"
    assert result.cost == pytest.approx(1.5 * len(client.calls))
    assert all(s.actual_cost == 1.5 for s in result.trace[:-1])
    assert result.cost_complete


def test_run_survives_failing_and_hanging_models() -> None:
    strat, models = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)

    def call(name, query):
        if name == "huge":
            raise ConnectionError("provider down")
        if name == "large":
            time.sleep(1.0)
            return {"score": 1.0}
        if name == "medium":
            return None  # no answer
        if name == "small":
            raise RuntimeError("overloaded")
        raise AssertionError(name)

    with pytest.raises(AllModelsFailedError) as info:
        strat.run("q", call, timeout=0.2)
    statuses = {s.model: s.status for s in info.value.trace if s.model}
    assert statuses == {
        "huge": "failed",
        "large": "timeout",
        "medium": "invalid",
        "small": "failed",
    }

    def call_ok_small(name, query):
        return {"score": 0.4} if name == "small" else call(name, query)

    result = strat.run("q", call_ok_small, timeout=0.2)
    assert result.model == "small"
    assert set(result.failed) == {"huge", "large", "medium"}
    assert "provider down" in result.failed["huge"]
    assert [s.status for s in result.trace][-1] == "stop"


def test_arun_matches_run_and_handles_async_timeouts() -> None:
    strat, models = make_live()

    async def call(name, query):
        if name == "medium":
            await asyncio.sleep(1.0)
        return {"score": 0.8 if name == "large" else 0.3}

    def sync_call(name, query):
        if name == "medium":
            raise TimeoutError
        return {"score": 0.8 if name == "large" else 0.3}

    result = asyncio.run(strat.arun("q", call, timeout=0.1))
    statuses = [(s.model, s.status) for s in result.trace]
    assert ("medium", "timeout") in statuses
    reference = strat.run("q", sync_call)
    assert [s.model for s in reference.trace] == [s.model for s in result.trace]
    assert result.model == reference.model == "large"


def test_call_model_and_caps_are_checked_up_front() -> None:
    strat, _ = make_live()
    with pytest.raises(TypeError, match="call_model must be a callable"):
        strat.run("q", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="call_model"):
        asyncio.run(strat.arun("q", "gpt"))  # type: ignore[arg-type]
    ok = Counting(lambda name: {"score": 0.5})
    with pytest.raises(ValueError, match="max_calls"):
        strat.run("q", ok, max_calls=0)
    with pytest.raises(ValueError, match="max_cost"):
        strat.run("q", ok, max_cost=-1.0)
    with pytest.raises(ValueError, match="timeout"):
        strat.run("q", ok, timeout=0)
    assert ok.calls == []


# --------------------------------------------------------------------------- cost amplification


class BreaksOnceAModelRan(ScoreEstimator):
    """Fine before any answer; then returns ``bad`` (NaN, a wrong shape, a negative
    variance or an exception)."""

    def __init__(self, bad: str) -> None:
        super().__init__((0.5, 0.6, 0.7, 0.99))
        self.bad = bad

    def predict(self, queries, answers):
        est = super().predict(queries, answers)
        if not any(a is not None for row in answers for a in row):
            return est
        if self.bad == "nan":
            return QualityEstimate(np.full_like(est.mean, np.nan), est.var)
        if self.bad == "shape":
            return QualityEstimate(est.mean[:, :2])
        if self.bad == "negative_variance":
            return QualityEstimate(est.mean, -np.ones_like(est.var))
        raise KeyError("the estimator's feature store is down")


@pytest.mark.parametrize("bad", ["nan", "shape", "negative_variance", "raise"])
def test_an_estimator_failure_stops_the_loop_after_one_call(bad: str, caplog) -> None:
    strat = CascadeRouter(
        BreaksOnceAModelRan(bad), ConstantCost((1, 2, 3, 4)), MODELS, order="given"
    ).set_lambdas(0.0)
    client = Counting(lambda name: {"score": 0.9})
    with caplog.at_level(logging.DEBUG, logger="cascade_routing"):
        with pytest.raises(EstimatorFailedError) as info:
            strat.run("secret query text", client)
    assert len(client.calls) == 1  # before: every model was called and marked invalid
    trace = info.value.trace
    assert [s.status for s in trace] == ["ok", "estimator_failed"]
    assert trace[-1].error
    assert all("secret query text" not in r.getMessage() for r in caplog.records)


def test_an_estimator_failure_returns_the_best_answer_estimated_so_far() -> None:
    class BreaksOnTheSecondAnswer(ScoreEstimator):
        def predict(self, queries, answers):
            if sum(a is not None for a in answers[0]) >= 2:
                raise ValueError("cannot read answer")
            return super().predict(queries, answers)

    strat = CascadeRouter(
        BreaksOnTheSecondAnswer((0.5, 0.6, 0.7, 0.99)),
        ConstantCost((1, 2, 3, 4)),
        MODELS,
        order="given",
    )
    strat.set_lambdas(0.0)
    client = Counting(lambda name: ({"score": 0.3, "from": name}, 1.0))
    result = strat.run("q", client)
    assert len(client.calls) == 2
    assert result.trace[-1].status == "estimator_failed"
    first = client.calls[0]
    assert result.model == first and result.answer["from"] == first
    assert set(result.answers) == set(client.calls)  # the second answer is kept, not chosen
    assert result.cost == 2.0


def test_an_estimator_failing_before_any_call_calls_no_model() -> None:
    class Broken:
        def predict(self, queries, answers):
            raise RuntimeError("not loaded")

    strat = CascadeRouter(Broken(), ConstantCost((1, 2, 3, 4)), MODELS).set_lambdas(0.0)
    client = Counting(lambda name: {"score": 1.0})
    with pytest.raises(EstimatorFailedError, match="not loaded") as info:
        strat.run("q", client)
    assert client.calls == []
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [s.status for s in info.value.trace] == ["estimator_failed"]


@pytest.mark.parametrize("cost", [float("nan"), -1.0, float("inf"), "12"])
def test_an_invalid_cost_keeps_the_answer_and_does_not_cascade(cost) -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.9), lam=0.01)
    reference = Counting(lambda name: ({"score": 0.95}, 1.0))
    expected = strat.run("q", reference)
    client = Counting(lambda name: ({"score": 0.95}, cost))
    result = strat.run("q", client)
    assert client.calls == reference.calls  # the same decisions, not every model
    assert len(client.calls) < len(MODELS)
    assert result.model == expected.model
    assert not result.failed
    steps = [s for s in result.trace if s.model]
    assert all(s.status == "invalid_cost" and s.actual_cost is None for s in steps)
    assert result.cost == pytest.approx(sum(s.estimated_cost for s in steps))
    assert not result.cost_complete


def test_max_calls_caps_the_calls_of_one_query() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)
    client = Counting(lambda name: {"score": 0.2})
    result = strat.run("q", client, max_calls=2)
    assert len(client.calls) == 2
    assert result.trace[-1].status == "call_cap"
    assert result.model in client.calls
    failing = Counting(lambda name: None)
    with pytest.raises(AllModelsFailedError, match="no model produced an answer"):
        strat.run("q", failing, max_calls=3)
    assert len(failing.calls) == 3


def test_max_cost_never_makes_a_call_that_would_exceed_it() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)  # costs 1, 2, 3, 4
    client = Counting(
        lambda name: ({"score": 0.2}, {"small": 1, "medium": 2, "large": 3, "huge": 4}[name])
    )
    uncapped = strat.run("q", Counting(client.reply))
    assert uncapped.cost > 4.0  # without a cap the loop spends more
    result = strat.run("q", client, max_cost=4.0)
    assert result.cost <= 4.0
    assert result.trace[-1].status == "cost_cap"
    assert result.trace[-1].model not in client.calls
    nothing = Counting(client.reply)
    with pytest.raises(AllModelsFailedError, match="cap"):
        strat.run("q", nothing, max_cost=0.5)
    assert nothing.calls == []


def test_logs_name_the_model_and_status_but_never_the_query(caplog) -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)

    def call(name, query):
        if name == "huge":
            raise ConnectionError("down")
        return {"score": 0.4}

    with caplog.at_level(logging.DEBUG, logger="cascade_routing"):
        strat.run("my private question", call)
    messages = [r.getMessage() for r in caplog.records]
    assert any("huge" in m and "failed" in m for m in messages)
    assert all("my private question" not in m for m in messages)
