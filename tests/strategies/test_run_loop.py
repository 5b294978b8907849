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
from cascade_routing.learn import ModelAnswer
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
def test_an_estimator_failure_stops_the_loop_and_keeps_the_paid_answer(bad: str, caplog) -> None:
    strat = CascadeRouter(
        BreaksOnceAModelRan(bad), ConstantCost((1, 2, 3, 4)), MODELS, order="given"
    ).set_lambdas(0.0)
    client = Counting(lambda name: ({"score": 0.9, "from": name}, 1.25))
    with caplog.at_level(logging.DEBUG, logger="cascade_routing"):
        result = strat.run("secret query text", client)
    assert len(client.calls) == 1  # before: every model was called and marked invalid
    # The one answer paid for is returned, not lost in an exception.
    assert result.model == client.calls[0] and result.answer["from"] == client.calls[0]
    assert result.fallback == "best_so_far"
    assert result.cost == 1.25
    trace = result.trace
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
    assert result.fallback == "best_so_far"


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


# --------------------------------------------------------------------------- no lost answer


def test_a_fallback_model_answers_when_the_estimators_fail_before_any_call() -> None:
    class Broken:
        def predict(self, queries, answers):
            raise KeyError("error payload")

    strat = CascadeRouter(Broken(), ConstantCost((1, 2, 3, 4)), MODELS).set_lambdas(0.0)
    client = Counting(lambda name: ({"score": 1.0, "from": name}, 0.5))
    result = strat.run("q", client, fallback_model="medium")
    assert client.calls == ["medium"]
    assert result.model == "medium" and result.answer["from"] == "medium"
    assert result.fallback == "fallback_model" and result.cost == 0.5
    assert [s.status for s in result.trace] == ["estimator_failed", "ok"]
    again = asyncio.run(strat.arun("q", Counting(client.reply), fallback_model="medium"))
    assert again.model == "medium" and again.fallback == "fallback_model"
    failing = Counting(lambda name: None)
    with pytest.raises(EstimatorFailedError, match="error payload"):
        strat.run("q", failing, fallback_model="medium")  # the fallback gave nothing either
    assert failing.calls == ["medium"]
    with pytest.raises(ValueError, match="fallback_model must be one of"):
        strat.run("q", client, fallback_model="gpt-5")


def test_a_timed_out_call_is_charged_its_estimate_and_marked_incomplete() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)  # costs 1, 2, 3, 4

    def call(name, query):
        if name == "huge":
            time.sleep(0.5)
        return {"score": 0.3}, 0.0

    result = strat.run("q", call, timeout=0.1)
    hung = [s for s in result.trace if s.model == "huge"]
    assert hung[0].status == "timeout" and hung[0].actual_cost is None
    assert result.cost == pytest.approx(4.0)  # the estimate of huge; every answer cost 0
    assert not result.cost_complete


def test_a_structured_answer_carries_its_cost_and_a_confidence_is_never_a_cost() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)

    class Scored(ModelAnswer):
        @property
        def score(self) -> float:
            return 0.3

    class ByScore(ScoreEstimator):
        def predict(self, queries, answers):
            rows = [[None if a is None else {"score": a.score} for a in r] for r in answers]
            return super().predict(queries, rows)

    strat = CascadeRouter(
        ByScore((0.5, 0.6, 0.7, 0.99)), ConstantCost((1, 2, 3, 4)), MODELS, order="given"
    ).set_lambdas(0.0)
    result = strat.run("q", lambda name, q: Scored("x", confidence=0.93, cost=0.01))
    ok = [s for s in result.trace if s.model]
    assert all(s.status == "ok" and s.actual_cost == 0.01 for s in ok)
    assert result.cost == pytest.approx(0.01 * len(ok)) and result.cost_complete
    unknown = strat.run("q", lambda name, q: Scored("x", confidence=0.93))
    steps = [s for s in unknown.trace if s.model]
    assert all(s.status == "unknown_cost" and s.actual_cost is None for s in steps)
    assert unknown.cost == pytest.approx(sum(s.estimated_cost for s in steps))
    assert not unknown.cost_complete and not unknown.failed


def test_a_deadline_bounds_the_whole_query_and_returns_the_answer_paid_for() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)
    client = Counting(lambda name: ({"score": 0.3, "from": name}, 1.0))

    def slow(name, query):
        time.sleep(0.3)
        return client(name, query)

    t0 = time.perf_counter()
    result = strat.run("q", slow, deadline=0.45)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.7  # without the deadline: 4 calls of 0.3 s
    assert client.calls and result.model == client.calls[0]
    assert result.fallback == "best_so_far"
    assert [s.status for s in result.trace][-1] in ("timeout", "deadline")
    assert "timeout" in [s.status for s in result.trace]  # the second call was cut short

    async def aslow(name, query):
        await asyncio.sleep(0.3)
        return {"score": 0.3, "from": name}, 1.0

    t0 = time.perf_counter()
    aresult = asyncio.run(strat.arun("q", aslow, deadline=0.45))
    assert time.perf_counter() - t0 < 0.7
    assert aresult.model == client.calls[0] and aresult.fallback == "best_so_far"
    with pytest.raises(ValueError, match="deadline"):
        strat.run("q", slow, deadline=0)


def test_run_leaves_no_thread_behind_and_a_hung_call_never_blocks_exit() -> None:
    import threading

    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)
    release = threading.Event()

    def call(name, query):
        if name == "large":
            release.wait(10)
        return {"score": 0.3}

    before = threading.active_count()
    strat.run("q", lambda name, q: {"score": 0.3}, timeout=1.0)
    assert threading.active_count() == before
    result = strat.run("q", call, timeout=0.1)
    assert [s.status for s in result.trace if s.model == "large"] == ["timeout"]
    hung = [t for t in threading.enumerate() if t.name == "cascade-routing-call-large"]
    assert len(hung) == 1 and hung[0].daemon  # it cannot hold the interpreter at exit
    release.set()
    hung[0].join(5)
    assert threading.active_count() == before


def test_arun_runs_a_sync_client_off_the_event_loop_with_its_timeout() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)

    def blocking(name, query):
        time.sleep(1.0 if name == "medium" else 0.05)
        return {"score": 0.3}

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        result = await strat.arun("q", blocking, timeout=0.2)
        elapsed = time.perf_counter() - t0
        t.cancel()
        return result, elapsed, ticks

    result, elapsed, ticks = asyncio.run(main())
    statuses = {s.model: s.status for s in result.trace if s.model}
    assert statuses["medium"] == "timeout"  # before: 1 s later, reported "ok"
    assert elapsed < 0.9
    assert ticks >= 0.5 * elapsed / 0.01  # the event loop kept running during the calls


def test_cancelling_arun_cancels_the_call_in_flight_and_leaves_no_task() -> None:
    strat, _ = make_live(prior=(0.5, 0.6, 0.7, 0.99), lam=0.0)
    seen: list[str] = []

    async def hangs(name, query):
        seen.append("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return {"score": 0.3}

    async def main():
        before = len(asyncio.all_tasks())
        task = asyncio.create_task(strat.arun("q", hangs))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return before, len(asyncio.all_tasks())

    before, after = asyncio.run(main())
    assert seen == ["started", "cancelled"]  # before: the call ran on, orphaned
    assert after == before


def test_offloaded_planning_keeps_the_event_loop_running_under_a_slow_estimator() -> None:
    class Slow(ScoreEstimator):
        def predict(self, queries, answers):
            time.sleep(0.3)  # CPU-heavy in real life (a scikit-learn model); blocks here
            return super().predict(queries, answers)

    strat = CascadeRouter(
        Slow((0.5, 0.6, 0.7, 0.99)), ConstantCost((1, 2, 3, 4)), MODELS, order="given"
    ).set_lambdas(0.0)

    async def call(name, query):
        return {"score": 0.3}

    async def longest_stall(offload: bool) -> tuple[float, object]:
        stall, last, running = 0.0, time.perf_counter(), True

        async def ticker():
            nonlocal stall, last
            while running:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                stall, last = max(stall, now - last), now

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        result = await strat.arun("q", call, offload_planning=offload)
        running = False
        await t
        return stall, result

    blocked, inline = asyncio.run(longest_stall(False))
    free, offloaded = asyncio.run(longest_stall(True))
    assert blocked >= 0.3  # planning in place stalls the loop for a whole estimate
    assert free < 0.2  # (a margin for this shared machine's scheduling delays)
    assert [s.model for s in offloaded.trace] == [s.model for s in inline.trace]
    assert offloaded.model == inline.model
    with pytest.raises(TypeError, match="offload_planning"):
        asyncio.run(strat.arun("q", call, offload_planning="yes"))
